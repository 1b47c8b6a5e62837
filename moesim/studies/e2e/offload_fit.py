"""Fitting a local engine's offload terms on its published rows (moesim.studies.e2e.ktransformers), and
checking them on rows they never saw.

Four terms, each physical (``offload.*``, moesim.config.offload; the last ``runtime.kernel_launch_s``):
- ``cpu_memory_efficiency``: the share of the host's DRAM bandwidth the engine's CPU expert kernels stream
  weights at;
- ``cpu_gemm_efficiency``: the share of the host's ``cpu_flops`` they compute at;
- ``layer_sync_s``: seconds per MoE layer and pass for handing the layer's tokens to the CPU's threads and
  waiting for them (stage ``host_sync``);
- ``kernel_launch_s``: seconds per kernel launched eagerly; KTransformers replays CUDA graphs in decode and
  launches prefill's kernels one by one (stage ``kernel_launch``, moesim.ir.overheads).
And one choice of form, ``cpu_overlap``: a CPU expert call takes overhead + stream + compute (the sum), or
overhead + the longer of the two (a roofline: the kernels stream weights while they compute). Both forms are
fitted and the one with the lower loss on the fit rows is kept; both are reported.

With every routed expert on the CPU (KTransformers' placement) the CPU branch is each layer's critical path,
so the time per token is t = a + sum over CPU calls of (o + form(m / mem, n x f / gemm)) + d x sync + e x
launch, for calls of n tokens, m and f the stream and the per-token compute at full rate, o the call's
overhead. The base run gives each row a (the rest of its critical path), its calls counted by tokens, and d
and e (one run with each moved): exact while the CPU branch stays the longest, which the real run with the
fitted terms checks. The fit minimises the log errors of tokens/s on the *fit* rows (every other row of each
group, in file order) with a robust loss, within bounds; it is deterministic. Leave one group out refits
without each group in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from moesim.config.offload import ENGINE_RUNTIME_TERMS
from moesim.studies.e2e import ktransformers

TERMS = ("cpu_memory_efficiency", "cpu_gemm_efficiency", "layer_sync_s", "kernel_launch_s")
RUNTIME = ENGINE_RUNTIME_TERMS  # the terms that live in the scenario's ``runtime``
REFERENCE = {"cpu_memory_efficiency": 0.5, "cpu_gemm_efficiency": 0.5, "layer_sync_s": 0.0, "kernel_launch_s": 0.0}
MOVED = {"layer_sync_s": 1e-3, "kernel_launch_s": 1e-5}
BOUNDS = {"cpu_memory_efficiency": (0.05, 1.0), "cpu_gemm_efficiency": (0.05, 1.0), "layer_sync_s": (0.0, 0.01),
          "kernel_launch_s": (0.0, 2e-4)}
UNITS = {"cpu_memory_efficiency": "share of the host's DRAM bandwidth (weight streaming)",
         "cpu_gemm_efficiency": "share of the host's cpu_flops (expert GEMMs)",
         "layer_sync_s": "s per MoE layer and pass with CPU experts (hand-off to the CPU's threads)",
         "kernel_launch_s": "s per kernel launched eagerly (prefill; decode replays CUDA graphs)"}
F_SCALE = 0.1  # soft-L1 turns linear beyond ~10% log error

# simulate(scenario) -> (seconds per token, {"calls": {tokens: calls per token}, "m": s, "f": s, "o": s})
Simulate = Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]


def with_terms(sc: dict[str, Any], terms: dict[str, Any]) -> dict[str, Any]:
    """``sc`` run with these terms and no engine (so the catalogue's fitted values do not apply)."""
    off = {k: v for k, v in terms.items() if k not in RUNTIME}
    rt = {**sc.get("runtime", {}), **{k: v for k, v in terms.items() if k in RUNTIME}}
    return {**sc, "offload": {**sc["offload"], "engine": None, **off}, **({"runtime": rt} if rt else {})}


def cpu_seconds(row: dict[str, Any], x: dict[str, Any]) -> float:
    """Seconds per token the row's CPU calls take with the terms ``x`` (``cpu_overlap``: the roofline form)."""
    n = np.array([float(k) for k in row["calls"]])
    count = np.array(list(row["calls"].values()), dtype=float)
    mem = row["m"] / x["cpu_memory_efficiency"]
    gemm = n * row["f"] / x["cpu_gemm_efficiency"]
    each = np.maximum(mem, gemm) if x.get("cpu_overlap") else mem + gemm
    return float((count * (row["o"] + each)).sum())


def coefficients(sc: dict[str, Any], simulate: Simulate) -> dict[str, Any]:
    """What the surrogate needs of scenario ``sc``: a, the CPU calls and their rates, d and e (see the module
    docstring), from the base run (sum form, reference rates) and one run per moved term."""
    t0, cpu = simulate(with_terms(sc, REFERENCE))
    row = {"calls": {str(k): v for k, v in sorted(cpu["calls"].items())}, "m": cpu["m"], "f": cpu["f"], "o": cpu["o"]}
    moved = {k: simulate(with_terms(sc, {**REFERENCE, k: MOVED[k]}))[0] for k in MOVED}
    row["a"] = t0 - cpu_seconds(row, REFERENCE)
    row["d"] = (moved["layer_sync_s"] - t0) / MOVED["layer_sync_s"]
    row["e"] = (moved["kernel_launch_s"] - t0) / MOVED["kernel_launch_s"]
    return row


def base_document(rows: list[tuple[int, str, dict[str, str]]], simulate: Simulate,
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Every row's surrogate coefficients and measured tokens/s: what the fit needs."""
    out = []
    for k, (i, g, r) in enumerate(rows):
        if progress:
            progress(k, len(rows), g)
        out.append({"row": i, "group": g, "engine": r["engine"], **coefficients(ktransformers.scenario(r, i), simulate),
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


def tokens_per_s(row: dict[str, Any], x: dict[str, Any]) -> float:
    """The row's tokens/s with the terms ``x``."""
    t = row["a"] + cpu_seconds(row, x) + row["d"] * x["layer_sync_s"] + row["e"] * x["kernel_launch_s"]
    return 1.0 / t


def _fit_form(rows: list[dict[str, Any]], overlap: bool) -> tuple[dict[str, Any], float]:
    """The terms minimising the robust log errors over ``rows`` in one form, and the loss they reach."""
    lo, hi = [BOUNDS[k][0] for k in TERMS], [BOUNDS[k][1] for k in TERMS]

    def residuals(v: np.ndarray) -> np.ndarray:
        x = {**dict(zip(TERMS, v)), "cpu_overlap": overlap}
        return np.array([np.log(tokens_per_s(r, x) / r["measured"]) for r in rows])

    res = least_squares(residuals, [0.5, 0.5, 1e-4, 1e-5], bounds=(lo, hi), loss="soft_l1", f_scale=F_SCALE,
                        x_scale=[1.0, 1.0, 1e-3, 1e-5], xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return {**{k: float(round(v, 7)) for k, v in zip(TERMS, res.x)}, "cpu_overlap": overlap}, float(res.cost)


FORMS = (("sum", False), ("roofline", True))


def _fit_forms(rows: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], float]]:
    """Each form's fitted terms over ``rows`` and the loss they reach."""
    return {name: _fit_form(rows, overlap) for name, overlap in FORMS}


def _best(forms: dict[str, tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """The terms of the form with the lower loss (the first on a tie)."""
    return min(forms.values(), key=lambda f: f[1])[0]


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The terms and form with the lower robust loss over ``rows`` (the reference without rows)."""
    if not rows:
        return {**REFERENCE, "cpu_overlap": False}
    return _best(_fit_forms(rows))


def borrowed(x: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's terms: KTransformers' fitted ones but its launch cost (a C++ engine does not pay Python's
    dispatch per kernel)."""
    return {k: v for k, v in x.items() if k not in RUNTIME}


def errors(rows: list[dict[str, Any]], x: dict[str, Any]) -> dict[str, Any]:
    """MAPE and bias (fractions) of tokens/s over ``rows`` with the terms ``x``."""
    e = np.array([tokens_per_s(r, x) / r["measured"] - 1 for r in rows])
    return {"rows": len(rows), "mape": float(np.abs(e).mean()) if e.size else None,
            "bias": float(e.mean()) if e.size else None}


def refit(base: dict[str, Any]) -> dict[str, Any]:
    """The fit from a base-run document: the terms (label, units, rows), errors on fit and test rows, both
    forms, and leave one group out. Deterministic."""
    rows = base["rows"]
    train = fit_split(rows)
    test = [r for r in rows if r not in train]
    fitted = _fit_forms(train)
    x = _best(fitted)
    logo, pooled = {}, []
    for g in sorted({r["group"] for r in rows}):
        xg = fit([r for r in train if r["group"] != g])
        mine = [r for r in rows if r["group"] == g]
        logo[g] = {**errors(mine, xg), **xg}
        pooled += [tokens_per_s(r, xg) / r["measured"] - 1 for r in mine]
    logo["all rows, each group held out"] = {"rows": len(pooled), "mape": float(np.mean(np.abs(pooled))),
                                            "bias": float(np.mean(pooled))}
    forms = {name: terms for name, (terms, _) in fitted.items()}
    estimates = {**REFERENCE, "cpu_memory_efficiency": 0.6, "cpu_overlap": False}
    return {"label": "fitted",
            "how": "moesim validate offload --refit (moesim.studies.e2e.offload_fit): robust least squares of log "
                   "errors of tokens/s over the fit rows, on the base run " + base.get("source", ""),
            "units": UNITS, "engines": {"ktransformers": x, "llama.cpp": borrowed(x)},
            "borrowed": {"llama.cpp": "from ktransformers: its CPU kernels' rates and form and its per-layer hand-off "
                                      "(no llama.cpp rows convert); not its eager launch cost, which is Python's"},
            "fit_rows": sorted(r["row"] for r in train), "test_rows": sorted(r["row"] for r in test),
            "surrogate_errors": {"fit": errors(train, x), "test": errors(test, x),
                                 "host estimates": errors(rows, estimates)},
            "forms": {k: {**v, "fit": errors(train, v), "test": errors(test, v)} for k, v in forms.items()},
            "leave_one_group_out": logo}
