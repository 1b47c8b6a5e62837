"""Statistics of router choices: imbalance measures and fits of the synthetic laws. Pure functions.

Gini: of per-expert loads (0 balanced, → 1 all on one expert). MaxVio: max load / mean load − 1 (Wang et al.
2024, "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts", §4.1). Balancedness: mean / max
per-GPU load (what SGLang's EPLB logs). Entropy: of the load distribution, normalised by log(E).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (mean absolute difference / (2 · mean))."""
    x = np.sort(np.asarray(x, dtype=float))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def max_vio(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    return float(np.max(x) / mean - 1.0) if mean > 0 else 0.0


def entropy(x: np.ndarray) -> float:
    p = np.asarray(x, dtype=float)
    p = p[p > 0] / p.sum() if p.sum() > 0 else p[:0]
    return float(-(p * np.log(p)).sum() / np.log(len(x))) if len(x) > 1 and p.size else 1.0


def fit_zipf_alpha(load: np.ndarray) -> float:
    """Least-squares slope of log load against log rank (experts with load > 0): the ``zipf`` law's alpha."""
    y = np.sort(np.asarray(load, dtype=float))[::-1]
    y = y[y > 0]
    if y.size < 2:
        return 0.0
    x = np.log(np.arange(1, y.size + 1))
    slope = np.polyfit(x, np.log(y), 1)[0]
    return float(max(0.0, -slope))


def gpu_loads(load: np.ndarray, gpus: int) -> np.ndarray:
    """Per-GPU load [G] under contiguous placement (expert e on GPU e // (E / G))."""
    return np.asarray(load, dtype=float).reshape(gpus, -1).sum(axis=1)


def distinct_per_token(ids: np.ndarray, experts: int, gpus: int, gpus_per_node: int) -> tuple[np.ndarray, ...]:
    """For a trace layer [tokens, k]: (distinct GPUs per token, distinct nodes per token), contiguous."""
    gpu = ids // (experts // gpus)
    node = gpu // gpus_per_node
    d = (np.diff(np.sort(gpu, axis=1), axis=1) != 0).sum(axis=1) + 1
    n = (np.diff(np.sort(node, axis=1), axis=1) != 0).sum(axis=1) + 1
    return d, n


def layer_summary(load: np.ndarray, gpus: int, ids: np.ndarray | None = None,
                  gpus_per_node: int = 8) -> dict[str, Any]:
    """One layer's statistics: expert loads [E]; optional trace [tokens, k] for per-token spreads."""
    g = gpu_loads(load, gpus)
    row = {"gini": gini(load), "expert_max_over_mean": max_vio(load) + 1.0, "max_vio": max_vio(load),
           "entropy": entropy(load), "gpu_max_over_mean": max_vio(g) + 1.0,
           "balancedness": float(g.mean() / g.max()) if g.max() > 0 else 1.0, "zipf_alpha": fit_zipf_alpha(load)}
    if ids is not None:
        d, n = distinct_per_token(ids, load.size, gpus, gpus_per_node)
        row["devices_per_token"] = float(d.mean())
        row["nodes_per_token"] = float(n.mean())
        row["nodes_per_token_hist"] = np.bincount(n, minlength=ids.shape[1] + 1)[1:].tolist()
    return row


def summarize_source(loads: np.ndarray, gpus: int, trace: np.ndarray | None = None,
                     gpus_per_node: int = 8) -> dict[str, Any]:
    """All layers: loads [layers, E], optional trace [layers, tokens, k]. Adds a suggested synthetic law."""
    layers = [layer_summary(loads[i], gpus, None if trace is None else trace[i], gpus_per_node)
              for i in range(loads.shape[0])]
    alphas = [r["zipf_alpha"] for r in layers]
    return {"layers": layers, "experts": int(loads.shape[1]), "gpus": gpus, "gpus_per_node": gpus_per_node,
            "mean_gini": float(np.mean([r["gini"] for r in layers])),
            "suggested_stats": {"kind": "zipf", "alpha": round(float(np.median(alphas)), 3)}}
