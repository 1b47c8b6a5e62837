"""Capacity planning on the serving simulation: the cheapest deployment that serves a throughput target
with TTFT and TPOT within their SLOs, per GPU type and overall.

Search: every deployment of the space (moesim.plan.space) is first checked without simulation (the
scenario validates, the weights fit with room for a KV cache, the GPU limit); the rest go in order of cost
per hour, a few at a time: their iteration surfaces are built (shared between deployments whose instances
are the same, cached on disk), then each deployment's capacity at the SLO is searched per batch limit
(moesim.plan.search). Once a GPU type has a deployment meeting the target, its deployments costing more
than (1 + effort.cost_slack) times that are not simulated (their rows say so). Interrupted (Ctrl-C), the
plan keeps every finished deployment and says it was interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import memory_per_gpu
from moesim.plan.guard import hours, overrun, wave_cost
from moesim.plan.search import assemble, search_batch, slots
from moesim.plan.space import Deployment, deployments, scenario_dict
from moesim.plan.spec import PlanSpec
from moesim.serve.deploy import deployment_of
from moesim.serve.run import grids_of, requests_of
from moesim.serve.size import workers_of
from moesim.serve.surface import Grid, build_surfaces
from moesim.serve.surface_cache import is_cached
from moesim.util.errors import MoesimError, ScenarioError

Progress = Callable[[str, int, int, str], None]  # (phase, done, total, label)


def _screen(p: PlanSpec, base_dir: str, d: Deployment, experts: int) -> tuple[list[tuple[int, dict]], Any]:
    """(scenario dicts by batch limit, the largest batch's scenario) or raise MoesimError with the reason."""
    by_batch = [(b, scenario_dict(p, d, b, experts)) for b in sorted(p.search.max_batch)]
    s = scenario_from_dict(by_batch[-1][1], base_dir=base_dir)
    if p.limits.max_gpus and d.gpus > p.limits.max_gpus:
        raise MoesimError(f"{d.gpus} GPUs exceed limits.max_gpus {p.limits.max_gpus}")
    if s.serving.arrival.kind == "trace":
        raise MoesimError("the planner sets the request rate: use an arrival law, not a trace")
    dep = deployment_of(s)
    mem = memory_per_gpu(dep.roles[0].scenario)
    d.extra["memory_per_gpu_gib"] = mem.get("total_bytes", 0.0) / 2**30
    d.extra["kv_tokens_per_instance"] = [r.kv_tokens for r in dep.roles]
    return by_batch, (s, dep)


def check_plan(p: PlanSpec, base_dir: str, space: list[Deployment]) -> int:
    """Mistakes in the plan itself, found before any deployment runs (not reported as every candidate being
    infeasible): a GPU type moesim does not know, a key no scenario has, a value no scenario accepts.
    Returns the model's routed experts (what the redundant counts are derived from)."""
    from moesim.util.errors import ScenarioError
    try:  # names and values only: whether a shape fits is the search's to find out
        experts = _experts(p, base_dir)
        for gpu in p.gpus:
            d = next((x for x in space if x.gpu == gpu), None)
            if d is not None:
                scenario_from_dict(scenario_dict(p, d, max(p.search.max_batch), experts), base_dir=base_dir,
                                   checks=False)
    except ScenarioError as err:
        where = "gpus" if err.path == "cluster.gpu" else err.path
        raise ScenarioError(err.problem, path=where, fix=err.fix) from None
    return experts


def scenario_of(p: PlanSpec, base_dir: str | Path, row: dict[str, Any]) -> Any:
    """The validated scenario of a plan row (its deployment at its batch limit): what ``moesim plan --emit``
    renders as engine launch files. MoesimError where no deployment of the plan has the row's label."""
    d = next((x for x in deployments(p) if x.label() == row.get("label")), None)
    if d is None:
        raise MoesimError(f"no deployment of the plan is labelled {row.get('label')!r}")
    experts = _experts(p, str(base_dir))
    return scenario_from_dict(scenario_dict(p, d, int(row["max_batch"]), experts), base_dir=str(base_dir))


def _experts(p: PlanSpec, base_dir: str) -> int:
    """The model's routed experts (what the redundant counts are derived from)."""
    raw = {"model": p.model, "cluster": {"gpu": next(iter(p.gpus)), "nodes": 1}}
    return scenario_from_dict(raw, base_dir=base_dir).model.n_routed_experts


def plan(p: PlanSpec, base_dir: str | Path, executor: Any, progress: Progress | None = None,
         use_cache: bool = True, store: Callable[[Path, str], None] | None = None,
         wave: int = 4) -> dict[str, Any]:
    """Search the plan's space; rows, the answer per GPU type and overall, runners-up and the frontier."""
    base_dir = str(base_dir)
    started = time.monotonic()
    space = deployments(p)
    experts = check_plan(p, base_dir, space)
    ready = _screened(p, base_dir, space, experts, progress)
    rows: dict[int, list[dict[str, Any]]] = {}
    best_cost: dict[str, float] = {}
    interrupted, stopped = False, None
    done = 0
    try:
        for start, stop in _waves(p, ready, wave):
            batch = [x for x in ready[start:stop] if not _pruned(p, x[0], best_cost)]
            done += sum(1 for d, _, _ in ready[start:stop] if d.reason)
            if not batch:
                continue
            left = p.limits.max_hours * 3600 - (time.monotonic() - started)
            try:
                surfaces = _surfaces(batch, executor, use_cache, store, progress, p, left)
            except OverBudget as over:
                if rows:  # what finished stands; the rest is said to be cut
                    stopped = over.text
                    break
                raise ScenarioError(over.text, path="limits.max_hours",
                                    fix=f"narrow the search ({over.axes}), or raise limits.max_hours") from None
            for d, res in _search(batch, surfaces, base_dir, p, executor):
                rows[id(d)] = res
                done += 1
                _update_best(p, d, res, best_cost)
                if progress:
                    progress("deployments", done, len(ready), d.label())
    except KeyboardInterrupt:
        interrupted = True
    scope = ready[0][2][0].workload.scope if ready else None
    return _result(p, space, rows, interrupted, time.monotonic() - started, scope, stopped)


def _screened(p: PlanSpec, base_dir: str, space: list[Deployment], experts: int, progress: Progress | None
              ) -> list[tuple[Deployment, list, Any]]:
    """The deployments that validate (the others get their reason), cheapest first."""
    ready: list[tuple[Deployment, list, Any]] = []
    for i, d in enumerate(space):
        if progress:
            progress("screening", i + 1, len(space), d.label())
        try:
            by_batch, sd = _screen(p, base_dir, d, experts)
        except MoesimError as exc:
            d.reason = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
            continue
        ready.append((d, by_batch, sd))
    ready.sort(key=lambda x: (x[0].cost_per_hour, x[0].gpus, x[0].label()))
    return ready


class OverBudget(Exception):
    """A wave's surfaces would take longer than what ``limits.max_hours`` leaves (``text`` says how long)."""

    def __init__(self, text: str, axes: str) -> None:
        super().__init__(text)
        self.text, self.axes = text, axes


def _search(batch: list, surfaces: dict[int, dict], base_dir: str, p: PlanSpec, executor: Any):
    """Yield (deployment, rows) as each deployment's search ends. Every (deployment, batch limit) is a task
    of its own, so workers are not left idle behind one long deployment; tasks go out as workers free up,
    smaller limits first, and a deployment's larger limits are left out once its smaller ones decide
    (``search.assemble``): the rows are those of searching the limits one after another."""
    found: dict[int, dict[int, dict]] = {id(d): {} for d, _, _ in batch}
    ended: set[int] = set()
    index = {id(d): (d, [b for b, _ in by_batch]) for d, by_batch, _ in batch}
    order = sorted(batch, key=lambda x: -slots(x[2][1]))  # the most sequences in flight (the longest runs) first
    handed = {id(d): 0 for d, _, _ in batch}

    def tasks():
        """The next task: a deployment's next limit where every limit handed out so far has its result (it
        is needed for certain: one executor worker goes through the deployments one after another),
        else the least advanced deployment's next limit (a worker would idle otherwise)."""
        while True:
            live = [x for x in order if id(x[0]) not in ended and handed[id(x[0])] < len(x[1])]
            if not live:
                return
            sure = [x for x in live if len(found[id(x[0])]) == handed[id(x[0])]]
            d, by_batch, _ = sure[0] if sure else min(live, key=lambda x: handed[id(x[0])])
            b, raw = by_batch[handed[id(d)]]
            handed[id(d)] += 1
            yield (id(d), b, raw, base_dir, surfaces[id(d)], p.effort)

    for task, res in executor.run(search_batch, tasks()):
        key = task[0]
        if key in ended:
            continue
        found[key][task[1]] = res
        d, batches = index[key]
        out = assemble(batches, found[key])
        if out is not None:
            ended.add(key)
            yield d, out


def _waves(p: PlanSpec, ready: list, wave: int) -> list[tuple[int, int]]:
    """[start, stop) of each wave of deployments (by cost). The first holds at least every deployment that
    no result can prune (costing at most 1 + cost_slack times the cheapest): they are simulated whatever
    the others find, so they share one surface build and one pool of workers; then ``wave`` at a time."""
    if not ready:
        return []
    cheapest = ready[0][0].cost_per_hour * (1 + p.effort.cost_slack)
    first = max(wave, sum(1 for d, _, _ in ready if d.cost_per_hour <= cheapest))
    return [(0, first)] + [(i, i + wave) for i in range(first, len(ready), wave)]


def _pruned(p: PlanSpec, d: Deployment, best_cost: dict[str, float]) -> bool:
    bound = best_cost.get(d.gpu)
    if bound is not None and d.cost_per_hour > bound * (1 + p.effort.cost_slack):
        d.reason = (f"not simulated: costs ${d.cost_per_hour:,.0f}/h, over {1 + p.effort.cost_slack:g}x the "
                    f"cheapest {d.gpu} deployment meeting the target (${bound:,.0f}/h)")
        return True
    return False


def _surfaces(batch, executor, use_cache, store, progress, p: PlanSpec, left_s: float = float("inf")
              ) -> dict[int, dict]:
    """Build every surface the batch needs at once; map each deployment to its role surfaces. OverBudget
    (before any point runs) where the missing points would take longer than ``left_s``."""
    grids: dict[str, Grid] = {}
    need: dict[int, dict[tuple[str, str], str]] = {}
    for d, _, (s, dep) in batch:
        need[id(d)] = {}
        for g in grids_of(s, dep, requests_of(s)):
            role = tuple(g.key.split("/"))
            g = replace(g, holdout=p.effort.surface_holdout)
            key = g.cache_key()
            grids[key] = replace(g, key=key)  # deployments with the same instance share one surface
            need[id(d)][role] = key

    workers = workers_of(executor)
    cost = wave_cost(list(grids.values()), lambda g: use_cache and is_cached(g.key), workers)

    def over(seconds: float, how: str) -> OverBudget:
        return OverBudget(f"{len(batch):,} deployments need about {hours(seconds)} of simulation ({cost.points:,} "
                          f"surface points of {cost.grids:,} surfaces on {workers} workers, {how}), more than the "
                          f"{hours(max(0.0, left_s))} left of limits.max_hours {p.limits.max_hours:g}", _widest_axes(p))

    if cost.seconds > left_s:
        raise over(cost.seconds, "estimated")
    t0 = time.monotonic()

    def prog(done: int, total: int) -> None:
        if progress:
            progress("surface points", done, total, "")
        late = overrun(done, total, time.monotonic() - t0, left_s, workers)
        if late is not None:
            raise over(late, f"at the pace of the first {done:,}")

    built = build_surfaces(list(grids.values()), executor, use_cache, prog, store)
    return {k: {role: built[key] for role, key in v.items()} for k, v in need.items()}


def _update_best(p: PlanSpec, d: Deployment, res: list[dict[str, Any]], best_cost: dict[str, float]) -> None:
    if any(_meets(p, r) for r in res):
        best_cost[d.gpu] = min(best_cost.get(d.gpu, float("inf")), d.cost_per_hour)


def _meets(p: PlanSpec, r: dict[str, Any]) -> bool:
    sm = r.get("summary")
    if not sm:
        return False
    t = p.target
    if t.output_tokens_per_s and sm["output_tokens_per_s"] < t.output_tokens_per_s:
        return False
    if t.concurrency and (r.get("capacity_concurrency") or 0) < t.concurrency:
        return False
    return not (t.requests_per_s and sm["requests_per_s"] < t.requests_per_s)


def _flat(p: PlanSpec, d: Deployment, r: dict[str, Any] | None, pct: int) -> dict[str, Any]:
    row = {**d.row(), "memory_per_gpu_gib": d.extra.get("memory_per_gpu_gib"), "max_batch": None,
           "feasible": False, "reason": d.reason, "meets_target": False, "capacity_requests_per_s": None,
           "capacity_concurrency": None,
           "output_tokens_per_s": None, "output_tokens_per_s_per_gpu": None, "cost_per_million_tokens": None,
           "ttft_slo_s": None, "tpot_slo_s": None, "ttft_p50_s": None, "tpot_p50_s": None,
           "decode_batch_per_gpu": None}
    if r is None:
        return row
    sm = r.get("summary") or {}
    tput = sm.get("output_tokens_per_s")
    row.update({"max_batch": r["max_batch"], "feasible": bool(sm), "reason": r.get("reason", ""),
                "meets_target": _meets(p, r), "capacity_requests_per_s": r.get("capacity_requests_per_s"),
                "capacity_concurrency": r.get("capacity_concurrency"),
                "output_tokens_per_s": tput, "output_tokens_per_s_per_gpu": sm.get("output_tokens_per_s_per_gpu"),
                "cost_per_million_tokens": d.cost_per_hour / (tput * 3600) * 1e6 if tput else None,
                "ttft_slo_s": sm.get(f"ttft_p{pct}_s"), "tpot_slo_s": sm.get(f"tpot_p{pct}_s"),
                "ttft_p50_s": sm.get("ttft_p50_s"), "tpot_p50_s": sm.get("tpot_p50_s"),
                "decode_batch_per_gpu": sm.get("decode_batch_per_gpu")})
    return row


def _widest_axes(p: PlanSpec) -> str:
    """The search axes with the most values, e.g. 'search.node_limit has 3 values, search.attention_tp 4'."""
    sr = p.search
    sizes = {f"search.{k}": len(getattr(sr, k)) for k in ("nodes", "micro_batches", "placement", "redundant_slots",
                                                          "node_limit", "attention_tp", "moe", "engine",
                                                          "prefill_share", "max_batch")}
    if "disaggregated" not in sr.deployment:
        sizes.pop("search.prefill_share")
    top = sorted((v, k) for k, v in sizes.items() if v > 1)[::-1][:3]
    return ", ".join(f"{k}: {v} values" for v, k in top) or "fewer GPU types"


def _result(p: PlanSpec, space: list[Deployment], rows: dict[int, list], interrupted: bool,
            wall_s: float, scope: str | None, stopped: str | None = None) -> dict[str, Any]:
    flat, pct = [], _slo(p)["percentile"]
    for d in space:
        res = rows.get(id(d))
        if res is None and not d.reason:
            d.reason = ("not evaluated: the plan was interrupted" if interrupted else
                        "not evaluated: the search stopped at limits.max_hours" if stopped else "not evaluated")
        flat += [_flat(p, d, r, pct) for r in res] if res else [_flat(p, d, None, pct)]
    ok = [r for r in flat if r["feasible"]]
    meeting = sorted([r for r in ok if r["meets_target"]], key=_cost_key)
    per_gpu = {g: next((r for r in meeting if r["gpu"] == g), None) for g in p.gpus}
    best = meeting[0] if meeting else None
    per_token = min(meeting, key=lambda r: (r["cost_per_million_tokens"], r["cost_per_hour"]), default=None)
    return {"rows": flat, "best": best, "best_per_gpu": per_gpu, "best_per_token": per_token,
            "runners_up": [{**r, "cost_over_best": r["cost_per_hour"] / best["cost_per_hour"] - 1.0}
                           for r in _distinct(meeting[1:], best)[:5]] if best else [],
            "frontier": pareto(ok), "target": p.target.model_dump(), "slo": _slo(p),
            "throughput_scope": scope, "interrupted": interrupted, "stopped": stopped, "wall_s": wall_s,
            "counts": {"deployments": len(space), "simulated": len(rows),
                       "screened_out": sum(1 for d in space if id(d) not in rows)}}


def _cost_key(r: dict[str, Any]) -> tuple:
    return (r["cost_per_hour"], r["cost_per_million_tokens"] or float("inf"), r["label"])


def _distinct(rows: list[dict[str, Any]], best: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per deployment (its cheapest per token batch limit), the best's deployment left out."""
    seen, out = {best["label"]} if best else set(), []
    for r in sorted(rows, key=lambda r: (_cost_key(r)[0], r["cost_per_million_tokens"] or 0)):
        if r["label"] not in seen:
            seen.add(r["label"])
            out.append(r)
    return out


def _slo(p: PlanSpec) -> dict[str, Any]:
    from moesim.config.serving import SloSpec
    return SloSpec.model_validate(p.serving.get("slo") or {}).model_dump()


def pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows no other beats on both cost per hour (lower) and SLO throughput (higher), by cost."""
    out, best = [], -1.0
    for r in sorted(rows, key=lambda r: (r["cost_per_hour"], -(r["output_tokens_per_s"] or 0))):
        if (r["output_tokens_per_s"] or 0) > best:
            out.append(r)
            best = r["output_tokens_per_s"]
    return out
