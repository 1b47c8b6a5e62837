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


ANY_KEYS = ("topk_ids", "ids", "logical_count", "expert_load_window", "global_physical_count", "expert_load_pass",
            "weight", "counts", "loads")


def summarize_file(path: Any, gpus: int, gpus_per_node: int, key: str | None = None, step: str = "mean",
                   kind: str = "auto") -> dict:
    """``moesim stats``: load a router trace or load histogram and summarise it per layer for EP ``gpus``.

    kind ``auto``: the file's entry decides (``topk_ids`` / ``ids`` are traces [layers, tokens, k]; the
    engines' count entries are histograms [steps, layers, E], physical counts folded with the file's map);
    a bare 3-D integer array could be either, and must be named with ``kind``. Layers that counted nothing
    (dense layers in a per-model-layer dump) are left out. Raises ``MoesimError`` naming the file or option."""
    from moesim.routing import sources
    from moesim.util.errors import MoesimError
    try:
        arr, extra = sources.load_array(path, key, ANY_KEYS)
        found = extra.get("source_key")
        if kind == "auto":
            kind = _kind_of(found, np.asarray(arr))
        if kind == "trace":
            trace = np.asarray(arr, dtype=np.int64)
            trace = trace[~(trace < 0).all(axis=(1, 2))] if trace.ndim == 3 else trace
            loads = _trace_loads(trace, int(extra.get("num_experts", trace.max() + 1)))
        else:
            trace, loads = None, _histogram_loads(path, found or key, step, extra)
    except (sources.SourceError, OSError, ValueError) as exc:
        raise MoesimError(f"{path}: {exc}") from None
    if loads.shape[1] % gpus:
        raise MoesimError(f"--gpus: {loads.shape[1]} experts do not split evenly over {gpus} GPUs; "
                          f"choose a divisor of {loads.shape[1]}")
    doc = summarize_source(loads, gpus, trace, gpus_per_node)
    doc.update(source=str(path), kind="trace" if trace is not None else "histogram",
               layers_count=int(loads.shape[0]), experts=int(loads.shape[1]), gpus=gpus)
    return doc


def _kind_of(found: str | None, arr: np.ndarray) -> str:
    if found in ("topk_ids", "ids"):
        return "trace"
    if found is None and arr.ndim == 3 and np.issubdtype(arr.dtype, np.integer):
        raise ValueError("a bare 3-D integer array is either a trace [layers, tokens, k] or counts "
                         "[steps, layers, experts]: say which with --kind trace or --kind histogram")
    return "histogram"


def _trace_loads(trace: np.ndarray, experts: int) -> np.ndarray:
    if trace.ndim != 3:
        raise ValueError(f"a trace is [layers, tokens, k], got shape {trace.shape}")
    return np.stack([np.bincount(layer.ravel(), minlength=experts) for layer in trace]).astype(float)


def _histogram_loads(path: Any, key: str | None, step: str, extra: dict) -> np.ndarray:
    """[counted layers, logical experts] of one step (or the mean), empty steps and layers left out."""
    from moesim.routing import dumps, sources
    series = dumps.drop_empty_steps(sources.series(path, key)[0])
    p2l = extra.get("physical_to_logical_map")
    experts = int(np.asarray(p2l).max()) + 1 if p2l is not None else series.shape[2]
    if step != "mean" and not (step.lstrip("-").isdigit() and -series.shape[0] <= int(step) < series.shape[0]):
        raise ValueError(f"--step: {step!r} is not 'mean' or a step index below {series.shape[0]}")
    one = series.mean(axis=0) if step == "mean" else series[int(step)]
    loads = sources.fold_physical(one, extra, experts)
    return loads[series.sum(axis=(0, 2)) > 0]
