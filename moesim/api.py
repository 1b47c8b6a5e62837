"""The Python API: load → build → simulate → summarise → write. Notebook-friendly; no click needed.

>>> from moesim import api
>>> result = api.run("scenarios/deepseek-v3-prefill-h800.yaml", overrides=["cluster.nodes=8"])
>>> result.summary["iteration_time_s"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moesim import __version__
from moesim.build import Built, build, merge_stats
from moesim.config import load_scenario
from moesim.config.schema import Scenario
from moesim.engine import SimRecords, simulate, simulate_overlap
from moesim.memory import memory_per_gpu
from moesim.metrics import summarize
from moesim.training import backward_work, gradient_sync_s


@dataclass(frozen=True)
class Result:
    """One simulated iteration: the summary document plus the raw records behind it."""

    summary: dict[str, Any]
    records: SimRecords
    built: Built


def run(path: str | Path, overrides: Iterable[str] = ()) -> Result:
    """Load the scenario file at ``path`` (with ``a.b=value`` overrides) and simulate it."""
    return run_scenario(load_scenario(path, overrides))


def run_scenario(s: Scenario, trace: list[np.ndarray] | None = None, placement: Any = None) -> Result:
    """Simulate one forward iteration through every MoE layer of a validated scenario.

    trace: optional per-MoE-layer top-k expert ids [GPUs × tokens_per_gpu, k], GPU-major, replayed
    instead of synthetic routing."""
    lat = s.cluster.gpu.collective_latency
    d_lat = 2 * lat if s.comm.layout_exchange else lat
    if s.workload.micro_batches == 2:
        built, records = _two_micro_batches(s, placement, lat, d_lat)
    else:
        built = build(s, trace, placement)
        work = built.work
        if s.workload.mode == "training":
            # every accumulation step replays the same micro-batch's routing (same statistics)
            work = (work + backward_work(s, built.work)) * s.workload.accumulation_steps
            if s.workload.gradient_sync:
                last = work[-1]
                sync = gradient_sync_s(s, built.placement)
                work[-1] = dataclasses.replace(last, unpermute_s=last.unpermute_s + sync)
        records = simulate(work, built.topology, lat, exact=built.fluid_network, dispatch_latency_s=d_lat)
    stats, ids = built.stats, built.model.moe_layer_ids
    training = s.workload.mode == "training"
    steps = s.workload.accumulation_steps if training else 1
    if training:  # backward rows follow the forward ones, last layer first; then the next micro-batch
        stats, ids = (stats + stats[::-1]) * steps, (ids + ids[::-1]) * steps
    doc = summarize(records, stats, ids, s.cluster.num_gpus * s.workload.tokens_per_gpu * steps,
                    s.cluster.gpus_per_node)
    if training:
        n = len(built.stats)
        for i, row in enumerate(doc["layers"]):
            row["pass"] = "forward" if i % (2 * n) < n else "backward"
            row["micro_batch"] = i // (2 * n)
        doc["gradient_sync_s"] = gradient_sync_s(s, built.placement) if s.workload.gradient_sync else 0.0
    doc["throughput_scope"] = s.workload.scope
    return Result({**_meta(built), **doc}, records, built)


def _two_micro_batches(s: Scenario, placement: Any, lat: float, d_lat: float) -> tuple[Built, SimRecords]:
    """Each GPU's tokens split in two micro-batches (same statistics and placement, own routing draws),
    interleaved by the engine. Statistics add up; per-layer stage times are the later micro-batch's."""
    half = s.model_copy(update={"workload": s.workload.model_copy(
        update={"tokens_per_gpu": s.workload.tokens_per_gpu // 2})})
    b0 = build(half, None, placement)
    b1 = build(half, None, b0.placement, micro_batch=1)
    r0, r1 = simulate_overlap([b0.work, b1.work], b0.topology, lat, exact=b0.fluid_network, dispatch_latency_s=d_lat)
    built = dataclasses.replace(b0, scenario=s, stats=[merge_stats(a, b) for a, b in zip(b0.stats, b1.stats)])
    return built, SimRecords(np.maximum(r0.times, r1.times), r0.network_recomputes)


def _meta(b: Built) -> dict[str, Any]:
    s = b.scenario
    return {
        "moesim_version": __version__,
        "scenario": s.name,
        "seed": s.seed,
        "model": b.model.name,
        "gpu": s.cluster.gpu.name,
        "nodes": s.cluster.nodes,
        "gpus_per_node": s.cluster.gpus_per_node,
        "mode": s.workload.mode,
        "tokens_per_gpu": s.workload.tokens_per_gpu,
        "moe_layers": b.model.num_moe_layers,
        "routing": {"top_k": b.routing.top_k, "n_group": b.routing.n_group, "topk_group": b.routing.topk_group,
                    "group_score": b.routing.group_score, "capacity_factor": b.routing.capacity_factor,
                    "stats": s.router.stats.model_dump()},
        "placement": s.placement.kind,
        "comm": s.comm.model_dump(),
        "fidelity": {"network": "fluid" if b.fluid_network else "drain",
                     "routing": ("trace replay" + ("" if b.trace_exact else ", reused cyclically")
                                 if b.trace_exact is not None else
                                 "exact" if b.sampled_tokens_per_gpu == s.workload.tokens_per_gpu else "sampled"),
                     "routed_tokens_per_gpu": b.sampled_tokens_per_gpu},
        "cost_sources": dict(sorted(s.cluster.gpu_provenance.items())),
        "memory_per_gpu": memory_per_gpu(s),
        "compute_costs": b.costs_source,
    }
