"""An offload run: scenario → tier plan → decode steps' routing → cache walk → stage programs → engine →
summary. The engine does the timing; everything else here is pure array work."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from moesim import __version__
from moesim.config.schema import Scenario, TraceStats
from moesim.engine import SimRecords, simulate
from moesim.hw.costs.loader import cost_model
from moesim.hw.topology import build_topology
from moesim.ir.overheads import with_overheads
from moesim.ir.program import Program
from moesim.ir.resolve import resolve
from moesim.iteration.build import fidelity, non_moe_pieces, popularity_of
from moesim.offload.access import LayerAccess, cache_scope, walk
from moesim.offload.programs import layer_program
from moesim.offload.steps import step_ids
from moesim.offload.summary import PARTS, breakdown, bytes_doc, cache_doc
from moesim.offload.tiers import ACT_BYTES, MissCosts, TierPlan, plan_tiers


@dataclass(frozen=True)
class OffloadResult:
    """An offload run: its summary document, the programs the engine ran, its records, and the plan."""

    summary: dict[str, Any]
    records: SimRecords
    programs: tuple[tuple[Program, ...], ...]
    plan: TierPlan
    accesses: list[list[LayerAccess]]
    offload: bool = True

    @cached_property
    def doc(self) -> dict[str, Any]:
        return self.summary


def steps_of(s: Scenario) -> int:
    """Decode steps simulated (prefill: one pass)."""
    return s.offload.steps if s.workload.mode == "decode" else 1


def run_offload(s: Scenario, kv: bool = True) -> OffloadResult:
    """Simulate ``steps`` decode steps (or one prefill pass) of a validated offload scenario. ``kv``: the
    scenario's KV cache must fit beside the expert budget (serving's points leave that to its scheduler)."""
    r = resolve(s)
    plan = plan_tiers(s, kv)
    cm = cost_model(s.cluster, r.model, r.routing.top_k)
    mc = MissCosts(s, plan.expert_bytes, cm.expert)
    popularity = popularity_of(s)
    g, b, steps = s.cluster.gpus_per_node, s.workload.tokens_per_gpu, steps_of(s)
    ids, exact = step_ids(s, r.routing, popularity, steps, g * b)
    acc = walk(s, plan, popularity, ids, mc)
    before, after = non_moe_pieces(r, g, cm) if r.whole_model else ([{}] * r.model.num_moe_layers, {})
    last = r.model.num_moe_layers - 1
    programs = [p for t in range(steps) for p in _with_runtime(s, [
        layer_program(r, cm, plan, mc, acc[t][layer], layer, r.model.moe_layer_ids[layer], before[layer],
                      after if layer == last else {}, t) for layer in range(r.model.num_moe_layers)])]
    fluid = fidelity(s)[0]
    records = simulate([programs], build_topology(s.cluster), exact=fluid, engine=s.sim.engine)
    doc = _summary(s, plan, acc, records, exact, fluid)
    return OffloadResult(doc, records, (tuple(programs),), plan, acc)


def _with_runtime(s: Scenario, step: list[Program]) -> list[Program]:
    """One pass's programs with the engine's own time (``runtime``): host work at its start and, launched
    eagerly (no CUDA graph), every kernel's launch (moesim.ir.overheads)."""
    rt = s.runtime
    launch = rt.kernel_launch_s if rt.launch == "eager" else 0.0
    if rt.host_overhead_s <= 0 and launch <= 0:
        return step
    return with_overheads(step, s.model.num_hidden_layers, s.cluster.gpus_per_node, rt.host_overhead_s, launch)


def _summary(s: Scenario, plan: TierPlan, acc, rec: SimRecords, exact: bool, fluid: bool) -> dict[str, Any]:
    g, b, steps = s.cluster.gpus_per_node, s.workload.tokens_per_gpu, steps_of(s)
    total_s = rec.iteration_time_s
    tokens = g * b * steps
    parts = breakdown(rec)
    decode = s.workload.mode == "decode"
    per = steps if decode else tokens  # decode: per step (each sequence's time per token); prefill: per token
    return {
        "kind": "offload", "moesim_version": __version__, "scenario": s.name, "seed": s.seed,
        "model": s.model.name, "gpu": s.cluster.gpu.name, "host": s.cluster.host.name,
        "gpus": g, "mode": s.workload.mode, "sequences_per_gpu" if decode else "tokens_per_gpu": b,
        "steps": steps, "simulated_s": total_s,
        "tokens_per_s": tokens / total_s if total_s else float("inf"),
        "time_per_token_s": total_s / per,
        "per_sequence_tokens_per_s": (steps / total_s if total_s else float("inf")) if decode else None,
        "time_per_token_split_s": {k: parts[k] / per for k in PARTS},
        "cache": cache_doc(acc, plan, s.offload.cache, cache_scope(s)),
        "gpu_load_max_over_mean": _load_imbalance(acc),
        "host_bytes_per_token": bytes_doc(acc, plan, s.model.hidden_size * ACT_BYTES *
                                          (0 if s.cluster.host.unified else 1), tokens),
        "memory": plan.memory,
        "offload": s.offload.model_dump(),
        "fidelity": {"engine": rec.engine, "network": "fluid" if fluid else "drain",
                     "routing": ("trace replay" + ("" if exact else ", reused cyclically"))
                     if isinstance(s.router.stats, TraceStats) else "exact",
                     "locality": getattr(s.router.stats, "locality", None)},
        "cost_sources": {**{f"gpu.{k}": v for k, v in sorted(s.cluster.gpu_provenance.items())},
                         **{f"host.{k}": v for k, v in sorted(s.cluster.host_provenance.items())}},
    }


def _load_imbalance(acc: list[list[LayerAccess]]) -> float:
    """Mean over steps and layers of the busiest GPU's expert tokens over the mean (1 on one GPU)."""
    vals = []
    for row in acc:
        for la in row:
            tok = np.array([sum(a) + sum(b) + sum(c) + sum(d) for a, b, c, d in
                            zip(la.gpu_tokens, la.prefetched_tokens, la.fetched_tokens, la.cpu_tokens)], dtype=float)
            vals.append(tok.max() / tok.mean() if tok.mean() > 0 else 1.0)
    return float(np.mean(vals)) if vals else 1.0
