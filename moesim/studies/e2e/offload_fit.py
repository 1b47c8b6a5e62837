"""Fitting a local engine's offload terms on its published rows (moesim.studies.e2e.ktransformers), and
checking them on rows they never saw.

Three terms, each physical (``offload.*``, moesim.config.offload):
- ``cpu_memory_efficiency``: the share of the host's DRAM bandwidth the engine's CPU expert kernels stream
  weights at;
- ``cpu_gemm_efficiency``: the share of the host's ``cpu_flops`` they compute at;
- ``layer_sync_s``: seconds per MoE layer and pass for handing the layer's tokens to the CPU's threads and
  waiting for them (stage ``host_sync``).
With every routed expert on the CPU (KTransformers' placement) the CPU branch is a layer's critical path, and
the time per token is linear in the three: t = a + b / mem + c / gemm + d x sync. The base run measures a,
b, c, d per row with the simulator: once at the reference values and once with each term moved (4 runs a
row; exact while the CPU branch stays the longest, which the real run with the fitted terms checks). The fit
minimises the log errors of tokens/s on the *fit* rows (every other row of each group, in file order) with a
robust loss, within bounds; it is deterministic. Leave one group out refits without each group in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from moesim.studies.e2e import ktransformers

TERMS = ("cpu_memory_efficiency", "cpu_gemm_efficiency", "layer_sync_s")
REFERENCE = {"cpu_memory_efficiency": 0.5, "cpu_gemm_efficiency": 0.5, "layer_sync_s": 0.0}
MOVED = {"cpu_memory_efficiency": 0.25, "cpu_gemm_efficiency": 0.25, "layer_sync_s": 1e-3}
BOUNDS = {"cpu_memory_efficiency": (0.05, 1.0), "cpu_gemm_efficiency": (0.05, 1.0), "layer_sync_s": (0.0, 0.01)}
UNITS = {"cpu_memory_efficiency": "share of the host's DRAM bandwidth (weight streaming)",
         "cpu_gemm_efficiency": "share of the host's cpu_flops (expert GEMMs)",
         "layer_sync_s": "s per MoE layer and pass with CPU experts (hand-off to the CPU's threads)"}
F_SCALE = 0.1  # soft-L1 turns linear beyond ~10% log error


def with_terms(sc: dict[str, Any], terms: dict[str, float]) -> dict[str, Any]:
    """``sc`` run with these terms and no engine (so the catalogue's fitted values do not apply)."""
    return {**sc, "offload": {**sc["offload"], "engine": None, **terms}}


def coefficients(sc: dict[str, Any], seconds: Callable[[dict[str, Any]], float]) -> dict[str, float]:
    """a, b, c, d of t = a + b / mem + c / gemm + d x sync for scenario ``sc`` (``seconds``: scenario -> s per
    token), from the base run and one run per moved term."""
    t0 = seconds(with_terms(sc, REFERENCE))
    moved = {k: seconds(with_terms(sc, {**REFERENCE, k: MOVED[k]})) for k in TERMS}
    inv = {k: 1.0 / MOVED[k] - 1.0 / REFERENCE[k] for k in TERMS[:2]}
    b = (moved["cpu_memory_efficiency"] - t0) / inv["cpu_memory_efficiency"]
    c = (moved["cpu_gemm_efficiency"] - t0) / inv["cpu_gemm_efficiency"]
    d = (moved["layer_sync_s"] - t0) / MOVED["layer_sync_s"]
    a = t0 - b / REFERENCE["cpu_memory_efficiency"] - c / REFERENCE["cpu_gemm_efficiency"]
    return {"a": a, "b": b, "c": c, "d": d}


def base_document(rows: list[tuple[int, str, dict[str, str]]], seconds: Callable[[dict[str, Any]], float],
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Every row's coefficients (``seconds``: scenario -> s per token) and measured tokens/s: what the fit
    needs."""
    out = []
    for k, (i, g, r) in enumerate(rows):
        if progress:
            progress(k, len(rows), g)
        out.append({"row": i, "group": g, "engine": r["engine"], **coefficients(ktransformers.scenario(r, i), seconds),
                    "measured": ktransformers.measured(r)})
    if progress:
        progress(len(rows), len(rows), "")
    return {"source": "moesim validate offload --rebase", "rows": out}


def fit_split(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fit rows: every other row of each group, in file order, starting with its first (the file
    alternates prefill and decode rows, so every other row overall would fit on one mode only)."""
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        if seen.get(r["group"], 0) % 2 == 0:
            out.append(r)
        seen[r["group"]] = seen.get(r["group"], 0) + 1
    return out


def tokens_per_s(row: dict[str, Any], x: dict[str, float]) -> float:
    """The row's tokens/s with the terms ``x``."""
    t = row["a"] + row["b"] / x["cpu_memory_efficiency"] + row["c"] / x["cpu_gemm_efficiency"]
    return 1.0 / (t + row["d"] * x["layer_sync_s"])


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The terms minimising the robust log errors of tokens/s over ``rows`` (the reference without rows)."""
    if not rows:
        return dict(REFERENCE)
    lo, hi = [BOUNDS[k][0] for k in TERMS], [BOUNDS[k][1] for k in TERMS]

    def residuals(v: np.ndarray) -> np.ndarray:
        x = dict(zip(TERMS, v))
        return np.array([np.log(tokens_per_s(r, x) / r["measured"]) for r in rows])

    res = least_squares(residuals, [0.5, 0.5, 1e-4], bounds=(lo, hi), loss="soft_l1", f_scale=F_SCALE,
                        x_scale=[1.0, 1.0, 1e-3], xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return {k: float(round(v, 7)) for k, v in zip(TERMS, res.x)}


def errors(rows: list[dict[str, Any]], x: dict[str, float]) -> dict[str, Any]:
    """MAPE and bias (fractions) of tokens/s over ``rows`` with the terms ``x``."""
    e = np.array([tokens_per_s(r, x) / r["measured"] - 1 for r in rows])
    return {"rows": len(rows), "mape": float(np.abs(e).mean()) if e.size else None,
            "bias": float(e.mean()) if e.size else None}


def refit(base: dict[str, Any]) -> dict[str, Any]:
    """The fit from a base-run document: the terms (label, units, rows), errors on fit and test rows, and
    leave one group out. Deterministic."""
    rows = base["rows"]
    train = fit_split(rows)
    test = [r for r in rows if r not in train]
    x = fit(train)
    logo, pooled = {}, []
    for g in sorted({r["group"] for r in rows}):
        xg = fit([r for r in train if r["group"] != g])
        mine = [r for r in rows if r["group"] == g]
        logo[g] = {**errors(mine, xg), **xg}
        pooled += [tokens_per_s(r, xg) / r["measured"] - 1 for r in mine]
    logo["all rows, each group held out"] = {"rows": len(pooled), "mape": float(np.mean(np.abs(pooled))),
                                            "bias": float(np.mean(pooled))}
    return {"label": "fitted",
            "how": "moesim validate offload --refit (moesim.studies.e2e.offload_fit): robust least squares of log "
                   "errors of tokens/s over the fit rows, on the base run " + base.get("source", ""),
            "units": UNITS, "engines": {"ktransformers": x},
            "fit_rows": sorted(r["row"] for r in train), "test_rows": sorted(r["row"] for r in test),
            "surrogate_errors": {"fit": errors(train, x), "test": errors(test, x),
                                 "host estimates": errors(rows, {**REFERENCE, "cpu_memory_efficiency": 0.6})},
            "leave_one_group_out": logo}
