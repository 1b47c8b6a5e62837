"""Rebalancing over time: drifting router statistics, a re-plan every N iterations from a moving window,
the expert-weight bytes each re-plan moves, and throughput before, during and after, against keeping the
first plan (static).

Each iteration t simulates the scenario with its statistics at ``step = base + t`` (``router.stats.drift``
moves the hot experts). A re-plan at iteration t plans from the mean popularity of steps
``t - window + 1 .. t``. Every GPU loads the weights (3·H·I parameters) of each expert the new plan gives
it that the old plan did not, over its NIC; the transfer is counted as a stall before the iteration
(no overlap), which is how a pause-and-swap rebalancer behaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from moesim.config.schema import Scenario
from moesim.ir.resolve import resolve
from moesim.iteration.build import RouteReuse, popularity_of
from moesim.iteration.run import run_scenario
from moesim.placement import PLACEMENTS
from moesim.studies.compare import Interrupted
from moesim.util.errors import MoesimError


def _hosts(p, experts: int) -> np.ndarray:
    """[layers, G, E]: which experts each GPU holds."""
    layers = p.phy2log.shape[0]
    out = np.zeros((layers, p.gpus, experts), dtype=bool)
    lay = np.repeat(np.arange(layers), p.phy2log.shape[1])
    out[lay, np.tile(p.slot_gpu(), layers), p.phy2log.ravel()] = True
    return out


def _new_experts_per_gpu(old, new, experts: int) -> np.ndarray:
    """Per GPU [G]: experts (summed over layers) it must load because the old plan did not put them there."""
    return (_hosts(new, experts) & ~_hosts(old, experts)).sum(axis=(0, 2)).astype(float)


def _at_step(s: Scenario, step: int) -> Scenario:
    return s.model_copy(update={"router": s.router.model_copy(update={"stats": s.router.stats.model_copy(
        update={"step": step})})})


def rebalance_study(s: Scenario, iterations: int, every: int, window: int,
                    progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per iteration: iteration time with re-planning and with the first plan kept (both on the
    same routing, made once). ``progress(label)`` after each iteration; Ctrl-C raises
    ``compare.Interrupted`` with the rows that finished."""
    stats = s.router.stats
    if not getattr(stats, "drift", 0):
        raise MoesimError("rebalancing needs drifting statistics: set router.stats.drift (e.g. 0.05) on a "
                          "synthetic law (zipf, power_law, dirichlet, hot)")
    r = resolve(s)
    model, params, expert_bytes = r.model, r.routing, r.expert_bytes
    g, base = s.cluster.num_gpus, stats.step
    nic = r.links.nic_Bps
    plan = PLACEMENTS.get(s.placement.kind).plan

    def make_plan(t: int):
        steps = range(max(0, t - window + 1), t + 1)
        pop = np.mean([popularity_of(_at_step(s, base + u)) for u in steps], axis=0)
        return plan(pop, g, s.placement.redundant_experts, gpus_per_node=s.cluster.gpus_per_node,
                    n_group=params.n_group, rng=np.random.default_rng(s.seed))

    first = current = make_plan(0)
    rows: list[dict[str, Any]] = []
    try:
        for t in range(iterations):
            current = _iteration(s, t, every, base, current, first, make_plan, model, expert_bytes, nic, rows)
            if progress:
                progress(f"iteration {t}")
    except KeyboardInterrupt:
        raise Interrupted(rows) from None
    return rows


def _iteration(s, t, every, base, current, first, make_plan, model, expert_bytes, nic, rows):
    """Run iteration ``t`` (re-planning first when due), append its row, return the plan in use."""
    moved_bytes, stall = 0.0, 0.0
    if t and t % every == 0:
        new = make_plan(t)
        per_gpu = _new_experts_per_gpu(current, new, model.experts) * expert_bytes
        moved_bytes, stall = float(per_gpu.sum()), float(per_gpu.max() / nic)
        current = new
    st = _at_step(s, base + t)
    reuse = RouteReuse()  # the static plan routes the same tokens: made once, for this step only
    adaptive = run_scenario(st, placement=current, reuse=reuse).summary
    static = run_scenario(st, placement=first, reuse=reuse).summary
    rows.append({"iteration": t, "replanned": bool(moved_bytes), "iteration_time_s": adaptive.iteration_time_s,
                 "stall_s": stall, "moved_bytes": moved_bytes,
                 "gpu_load_max_over_mean": adaptive.totals.mean_layer_gpu_load_max_over_mean,
                 "static_iteration_time_s": static.iteration_time_s,
                 "static_gpu_load_max_over_mean": static.totals.mean_layer_gpu_load_max_over_mean,
                 "tokens": adaptive.tokens_per_iteration})
    return current


def summarize(rows: list[dict[str, Any]], every: int) -> dict[str, Any]:
    """Throughput (tokens/s, stalls included) before the first re-plan, at re-plan iterations, after, and
    overall, with and without re-planning."""
    def tput(sel, key="iteration_time_s", stall=True):
        t = sum(r[key] + (r["stall_s"] if stall else 0.0) for r in sel)
        return sum(r["tokens"] for r in sel) / t if t else None

    before = [r for r in rows if r["iteration"] < every]
    during = [r for r in rows if r["replanned"]]
    after = [r for r in rows if r["iteration"] >= every and not r["replanned"]]
    return {"throughput_before": tput(before), "throughput_during": tput(during), "throughput_after": tput(after),
            "throughput_overall": tput(rows),
            "static_throughput_overall": tput(rows, "static_iteration_time_s", stall=False),
            "moved_bytes_total": sum(r["moved_bytes"] for r in rows),
            "stall_s_total": sum(r["stall_s"] for r in rows), "replans": len(during)}
