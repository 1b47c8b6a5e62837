"""Fitting a training framework's term (``runtime.layer_sync_s``, Megatron) on Megatron-Bridge's published rows
(moesim.studies.e2e.megatron), and checking it on rows it never saw.

One term, physical: the seconds the GPUs wait per MoE layer and pass (forward, backward) for what the kernels
do not account for. The fit needs the simulator once: the *base* run (the term at 0) gives each row's step
time, and the term lengthens a step by its exposures, as the DES does:
- one pipeline stage: every micro-batch's forward and backward of every MoE layer, in series:
  n = ga x L x 2 (exact);
- ``pp`` stages: the 1F1B critical path runs (ga + pp - 1) micro-batches through one stage's L / pp
  layers: n = (ga + pp - 1) x (L / pp) x 2 (the stages' layer counts rounded to their mean); interleaved over
  v chunks, (ga·v + pp - 1) chunk passes of L / (pp·v) layers: n = (ga + (pp - 1) / v) x (L / pp) x 2.
step = step0 + n x h; throughput = tokens per GPU per step / step. The fit minimises the log errors of
throughput on the *fit* rows (every other convertible row, in file order) with a robust loss, within
bounds; it is deterministic. Leave one system out refits without each GPU in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from moesim.iteration.scenario import scenario_from_dict
from moesim.model.moe import MoEModel
from moesim.studies.e2e import megatron

BOUNDS = (0.0, 0.05)  # seconds per MoE layer and pass
F_SCALE = 0.1  # soft-L1 turns linear beyond ~10% log error


def base_scenario(sc: dict[str, Any]) -> dict[str, Any]:
    """``sc`` with the framework's term at 0 (the base run)."""
    return {**sc, "runtime": {**sc.get("runtime", {}), "layer_sync_s": 0.0}}


def exposures(sc: dict[str, Any]) -> float:
    """How many times one step waits ``layer_sync_s`` on its critical path (see the module docstring)."""
    wl = sc["workload"]
    layers = MoEModel.from_spec(scenario_from_dict(sc, checks=False).model).num_moe_layers
    ga, pp, v = wl["accumulation_steps"], wl.get("pipeline_stages", 1), wl.get("pipeline_virtual_stages", 1)
    return (ga + (pp - 1) / v) * (layers / pp) * 2.0


def base_document(rows: list[tuple[int, str, dict[str, str]]], predict: Callable[[dict[str, Any]], float],
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Every row run with the term at 0 (``predict``: scenario -> tokens/s/GPU): what the fit needs."""
    out = []
    for k, (i, g, r) in enumerate(rows):
        if progress:
            progress(k, len(rows), g)
        sc = megatron.scenario(r, i)
        wl = sc["workload"]  # a step moves mbs x seq x ga tokens through each pipeline's pp stages of GPUs
        tokens = wl["tokens_per_gpu"] * wl["accumulation_steps"] / wl.get("pipeline_stages", 1)
        out.append({"row": i, "group": g, "system": r["system"], "tokens_per_step_per_gpu": tokens,
                    "step_s": tokens / predict(base_scenario(sc)), "exposures": exposures(sc),
                    "measured": megatron.measured(r)})
    if progress:
        progress(len(rows), len(rows), "")
    return {"source": "moesim validate training --rebase", "rows": out}


def throughput(row: dict[str, Any], h: float) -> float:
    """The row's tokens/s/GPU with the term at ``h`` seconds."""
    return row["tokens_per_step_per_gpu"] / (row["step_s"] + row["exposures"] * h)


def fit(rows: list[dict[str, Any]]) -> float:
    """The term minimising the robust log throughput errors over ``rows`` (0 without rows)."""
    if not rows:
        return 0.0

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.array([np.log(throughput(r, x[0]) / r["measured"]) for r in rows])

    res = least_squares(residuals, [0.001], bounds=([BOUNDS[0]], [BOUNDS[1]]), loss="soft_l1", f_scale=F_SCALE,
                        x_scale=[BOUNDS[1]], xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return float(round(res.x[0], 7))


def errors(rows: list[dict[str, Any]], h: float) -> dict[str, Any]:
    """MAPE and bias (fractions) of tokens/s/GPU over ``rows`` with the term at ``h``."""
    e = np.array([throughput(r, h) / r["measured"] - 1 for r in rows])
    return {"rows": len(rows), "mape": float(np.abs(e).mean()) if e.size else None,
            "bias": float(e.mean()) if e.size else None}


def refit(base: dict[str, Any]) -> dict[str, Any]:
    """The fit from a base-run document: the term (label, unit, rows), errors on fit and test rows, and
    leave one system out. Deterministic."""
    rows = base["rows"]
    train = [r for k, r in enumerate(rows) if k % 2 == 0]
    h = fit(train)
    logo, pooled = {}, []
    for system in sorted({r["system"] for r in rows}):
        hs = fit([r for r in train if r["system"] != system])
        mine = [r for r in rows if r["system"] == system]
        logo[system] = {**errors(mine, hs), "layer_sync_s": hs}
        pooled += [throughput(r, hs) / r["measured"] - 1 for r in mine]
    logo["all rows, each system held out"] = {"rows": len(pooled), "mape": float(np.mean(np.abs(pooled))),
                                             "bias": float(np.mean(pooled))}
    return {"label": "fitted",
            "how": "moesim validate training --refit (moesim.studies.e2e.training_fit): robust least squares of "
                   "log errors of tokens/s/GPU over the fit rows, on the base run " + base.get("source", ""),
            "units": {"layer_sync_s": "s per MoE layer and pass (forward, backward)"},
            "frameworks": {"megatron": {"layer_sync_s": h}},
            "fit_rows": sorted(r["row"] for r in train),
            "test_rows": sorted(r["row"] for r in rows if r not in train),
            "surrogate_errors": {"fit": errors(train, h), "test": errors([r for r in rows if r not in train], h),
                                 "base": errors(rows, 0.0)},
            "leave_one_system_out": logo}
