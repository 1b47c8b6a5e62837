"""scenario with ``serving:`` → deployment · request stream · iteration surfaces → serving DES → summary.

The surface grids follow the request stream: prefill tokens per GPU up to the scheduler's budget, decode
batches up to ``max_batch`` (times the MTP step), contexts over the lengths the stream can reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moesim.config.schema import Scenario
from moesim.hw.topology import build_topology
from moesim.serve.deploy import Deployment, Role, deployment_of
from moesim.serve.grid_points import geometric_grid
from moesim.serve.guard import SloGuard
from moesim.serve.metrics import request_table, summarize, timeline
from moesim.serve.mixed import check_mixed
from moesim.serve.sim import ServeSim
from moesim.serve.size import guard_surfaces, workers_of
from moesim.serve.surface import Grid, Surface, build_surfaces, token_unit
from moesim.serve.surface_cache import is_cached
from moesim.serve.terms import mtp_of, overheads
from moesim.serve.workload import Requests, generate
from moesim.util.errors import ScenarioError

TOKEN_RATIO = 4.0  # prefill grid: tokens per GPU 4x apart (prefill time is near-affine in tokens)
BATCH_RATIO = 2.0  # decode grid: 2x apart (the weight-bound knee needs finer steps)
CONTEXT_RATIO = 4.0
ITERATION_NOTE = ("iteration times from the iteration DES at grid points, interpolated bilinearly; an instance's "
                  "tokens spread evenly over its GPUs (data-parallel attention, balanced ranks)")


@dataclass(frozen=True)
class ServeResult:
    summary: dict[str, Any]
    requests: dict[str, np.ndarray]
    timeline: dict[str, np.ndarray]
    surfaces: dict[tuple[str, str], Surface]


# memory the serving DES holds per request (arrays, the request's state, its rows in the tables): measured
# with /usr/bin/time on `moesim serve` of mixtral-8x7b-serve-trace-a100 at 20,000 and 80,000 requests:
# 531 MB and 1,446 MB of peak RSS, 15.2 KB a request; the fixed part is the process and the surfaces
REQUEST_BYTES, SERVE_BASE_BYTES = 16_000, 600e6


def guard_requests(s: Scenario, n: int | None = None) -> None:
    """Refuse a request stream whose memory estimate exceeds this machine's before it is generated
    (``serving.requests=1e8`` reached 6.2 GB before failing); ``sim.size_guard: false`` overrides."""
    from moesim.iteration.sizing import available_bytes
    n = s.serving.requests if n is None else n
    if not s.sim.size_guard or n is None:
        return
    need, have = SERVE_BASE_BYTES + n * REQUEST_BYTES, available_bytes()
    if need > have:
        fit = int((have - SERVE_BASE_BYTES) // REQUEST_BYTES)
        raise ScenarioError(f"{n:,} requests need about {need / 2**30:,.1f} GiB to simulate; this machine has "
                            f"{have / 2**30:,.1f} GiB", path="serving.requests",
                            fix=f"use at most {max(fit, 1):,} requests (or duration_s), or --set sim.size_guard=false")


def requests_of(s: Scenario) -> Requests:
    """The request stream on the scenario's workload stream of the seed (independent of routing's)."""
    guard_requests(s)
    rng = np.random.default_rng([s.seed, 0x5E7E])
    req = generate(s.serving, rng)
    if not len(req):
        raise ScenarioError("no request arrives", path="serving", fix="raise requests or duration_s")
    guard_requests(s, len(req))  # a trace's length is known once read
    return req


def check_fits(dep: Deployment, req: Requests) -> None:
    """Every request's prompt and output must fit one instance's KV cache, and without chunked prefill its
    prompt the token budget, or it could never run."""
    longest = int((req.input_tokens + req.output_tokens).max())
    prompt = int(req.input_tokens.max())
    for role in dep.roles:
        if role.prefills and not role.sched.chunked_prefill and prompt > role.prefill_budget:
            raise ScenarioError(f"without chunked prefill a prompt enters whole, and one of {prompt} tokens exceeds "
                                f"the {role.prefill_budget}-token budget of a {role.name} instance",
                                path="serving.scheduler.chunked_prefill",
                                fix="set chunked_prefill: true, or raise token_budget (TensorRT-LLM's max_num_tokens)")
        if longest > role.kv_tokens:
            raise ScenarioError(f"a request of {longest} tokens needs more KV cache than a {role.name} instance "
                                f"holds ({int(role.kv_tokens)} tokens)", path="serving.input_tokens",
                                fix="shorten the requests, or give each instance more GPUs (ep_gpus)")


def prefix_hit(s: Scenario, dep: Deployment) -> float:
    """The share of each prompt found in the prefix cache: ``serving.prefix_hit``, 0 without a cache."""
    return s.serving.prefix_hit if all(r.sched.prefix_cache for r in dep.roles) else 0.0


def grids_of(s: Scenario, dep: Deployment, req: Requests) -> list[Grid]:
    """The grids every role needs: prefill (aggregated, prefill) and decode (aggregated, decode)."""
    sv, out = s.serving, []
    isl, osl = req.input_tokens, req.output_tokens
    h = prefix_hit(s, dep)
    step = 1 + (sv.mtp.draft_tokens if sv.mtp else 0)
    for role in dep.roles:
        g = role.gpus_per_instance
        if role.prefills:
            chunked = (1 - h) * isl.max() > role.prefill_budget
            hi_ctx = 2 * isl.max() if chunked or h else isl.max()
            mixes = role.sched.policy.mixes  # mixed batches: any token count from 1
            lo_tok = max(1, math.ceil(max(1, (1 - h) * isl.min()) / g) if not (chunked or mixes) else 1)
            budget = max(1, role.prefill_budget // g)
            tokens = sv.surface.prefill_tokens or geometric_grid(min(lo_tok, budget), budget, TOKEN_RATIO)
            ctx = sv.surface.contexts or geometric_grid(max(1, (1 - h) * isl.min()), hi_ctx, CONTEXT_RATIO)
            out.append(Grid(f"{role.name}/prefill", role.scenario, "prefill", tokens, ctx, sv.surface.holdout))
        if role.decodes:
            seqs = role.max_running
            if sv.engine is not None:  # an engine's limits are per rank and large: what can run at once bounds them
                fit = role.kv_tokens // max(1, int(isl.min() + 1)) if math.isfinite(role.kv_tokens) else seqs
                seqs = max(1, min(seqs, fit, len(isl)))
            sc = role.scenario
            unit = token_unit(sc, "decode")  # a TP group's batch: from one sequence per group up
            top = max(1, seqs // g) * step * unit
            tokens = sv.surface.decode_batch or geometric_grid(step, top, BATCH_RATIO)
            ctx = sv.surface.contexts or geometric_grid(isl.min() + 1, (isl + osl).max(), CONTEXT_RATIO)
            if step > 1 and sc.workload.micro_batches == 1:  # MTP verify: step query tokens per sequence
                tokens = sv.surface.decode_batch or [b * step for b in geometric_grid(1, top // step, BATCH_RATIO)]
                sc = sc.model_copy(update={"workload": sc.workload.model_copy(update={"decode_queries": step})})
            out.append(Grid(f"{role.name}/decode", sc, "decode", tokens, ctx, sv.surface.holdout))
    return out


def serve(s: Scenario, executor: Any, use_cache: bool = True,
          progress: Callable[[int, int], None] | None = None,
          store: Callable[[Path, str], None] | None = None) -> ServeResult:
    """Simulate the scenario's request stream on its deployment."""
    if s.serving is None:
        raise ScenarioError("the scenario has no serving section", path="serving",
                            fix="add serving: {arrival: {kind: poisson, rate_per_s: 4}} (see `moesim serve --help`)")
    dep = deployment_of(s)
    req = requests_of(s)
    check_fits(dep, req)
    grids, cache = grids_of(s, dep, req), use_cache and s.serving.surface.cache
    guard_surfaces(s, grids, lambda g: cache and is_cached(g.cache_key()), workers_of(executor))
    built = build_surfaces(grids, executor, cache, progress, store)
    surfaces = {tuple(k.split("/")): v for k, v in built.items()}
    out = simulate_serving(s, dep, req, surfaces)
    roles = [(r.name, r.scenario, r.prefill_budget // r.gpus_per_instance) for r in dep.roles
             if r.prefills and r.decodes and r.sched.policy.mixes]
    if roles and s.serving.surface.holdout:
        out.summary["mixed_check"] = check_mixed(roles, surfaces, executor)
    return out


def simulate_serving(s: Scenario, dep: Deployment, req: Requests,
                     surfaces: dict[tuple[str, str], Surface], spans: bool = True, verdict_only: bool = False
                     ) -> ServeResult:
    """The serving DES on given surfaces (tests hand it surfaces whose times they chose); ``spans`` False
    runs every decode step as its own event (the reference the fast path is checked against).
    ``verdict_only``: stop once the SLO verdict is certain (moesim.serve.guard); such a run's summary is
    only ``{"slo": {"met", "percentile", "decided_at_s"}}`` and it has no tables."""
    sv = s.serving
    topo = build_topology(s.cluster) if dep.kind == "disaggregated" else None
    rng = np.random.default_rng([s.seed, 0x3A7])
    mtp, over = mtp_of(sv), overheads(sv)
    sim = ServeSim(dep, surfaces, req, prefix_hit(s, dep), mtp, rng, topo,
                   sv.load.concurrency if sv.load is not None else None, over, spans,
                   SloGuard(sv.slo.ttft_s, sv.slo.tpot_s, sv.slo.percentile) if verdict_only else None)
    sim.run()
    if sim.verdict is not None:
        met, at = sim.verdict
        return ServeResult({"slo": {"met": met, "percentile": sv.slo.percentile, "decided_at_s": at}}, {}, {},
                           surfaces)
    requests, tl = request_table(sim), timeline(sim)
    doc = summarize(sim, requests, tl, sv.slo, s.cluster.gpus_per_node)
    doc = {"scenario": s.name, "seed": s.seed, "model": s.model.name, "gpu": s.cluster.gpu.name,
           "nodes": s.cluster.nodes, "gpus_per_node": s.cluster.gpus_per_node,
           "deployment": sv.deployment.model_dump(), "engine": sv.engine, "scheduler": sv.scheduler.model_dump(),
           "scheduling": {r.name: _scheduling_doc(r) for r in dep.roles},
           "mtp": mtp.model_dump() if mtp else None, "overheads": asdict(over), "workload_source": req.source,
           "prefix_hit": sv.prefix_hit, "throughput_scope": s.workload.scope,
           "iteration_model": ITERATION_NOTE, **doc,
           "surfaces": {"/".join(k): _surface_doc(v) for k, v in surfaces.items()}}
    return ServeResult(doc, requests, tl, surfaces)


def _scheduling_doc(r: Role) -> dict[str, Any]:
    """The scheduler one instance of the role runs (the engine profile's values where the scenario is silent)."""
    sc = r.sched
    return {"policy": sc.policy_name, "max_running_per_instance": r.max_running,
            "token_budget_per_instance": r.prefill_budget, "admission": sc.admission,
            "chunked_prefill": sc.chunked_prefill, "prefix_cache": sc.prefix_cache,
            "cuda_graph_batches_per_rank": list(sc.graphs)}


def _surface_doc(v: Surface) -> dict[str, Any]:
    imb = [x for row in v.imbalance for x in row]
    return {"mode": v.mode, "tokens": list(v.tokens), "contexts": list(v.contexts), "points": len(imb),
            "holdout_error": v.holdout_error(), "gpu_load_max_over_mean": {"min": min(imb), "max": max(imb)}}
