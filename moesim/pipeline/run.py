"""scenario with ``workload.pipeline_stages`` → one stage's iteration DES → each stage's forward (backward)
seconds per micro-batch → the pipeline schedule DES with the hand-overs as flows → summary document.

Every stage has G / p GPUs and runs ``tokens_per_gpu`` per GPU per micro-batch, so one iteration DES of every
block on one stage's GPUs gives each block's time wherever it sits (its experts over its stage's GPUs, the
same statistics); block b goes to stage ⌊b·p / L⌋ (Megatron-LM's even split, the output head with the last
block). Training: each stage all-reduces the gradients of its own blocks after the flush, in parallel with the
others: 1/p of the single-stage run's gradient sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moesim.config.schema import Scenario
from moesim.hw.topology import Topology, build_topology
from moesim.iteration.run import Result, run_scenario
from moesim.iteration.sizing import guard
from moesim.iteration.stages import stage_scenario
from moesim.model.layers import ACT_BYTES
from moesim.model.memory import memory_per_gpu
from moesim.pipeline.schedule import Link, Timeline, simulate_pipeline

SYNC_STAGES = ("gradient_sync", "expert_gradient_sync", "data_parallel_sync")


@dataclass(frozen=True)
class PipelineResult:
    """A pipelined run: its summary document, the schedule's timeline and the stage's iteration result."""

    doc: dict[str, Any]
    timeline: Timeline
    stage: Result
    pipeline: bool = True


def stage_times(s: Scenario, stage: Result) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
    """(forward [p], backward [p] or None, blocks per stage [p], gradient sync seconds of the single-stage
    run) from the stage run's layer rows (each row: one MoE layer's pass with the dense blocks before it)."""
    p, blocks = s.workload.pipeline_stages, s.model.num_hidden_layers
    fwd, bwd, sync = np.zeros(p), np.zeros(p), 0.0
    for row in stage.summary.layers:
        k = min(p - 1, row.block * p // blocks)
        if row.pass_ == "backward":
            sy = sum(row.stages.get(n, 0.0) for n in SYNC_STAGES)
            bwd[k] += row.time_s - sy
            sync += sy
        else:
            fwd[k] += row.time_s
    per = np.bincount(np.minimum(p - 1, np.arange(blocks) * p // blocks), minlength=p)
    return fwd, (bwd if s.workload.mode == "training" else None), per, sync


def hand_overs(s: Scenario, topo: Topology) -> tuple[list[Link], float]:
    """One ``Link`` per stage boundary: every GPU sends its micro-batch's activations (tokens_per_gpu × hidden,
    BF16; with attention TP each rank sends its 1/tp share, Megatron-LM's scatter-gather) to the GPU of the
    same rank in the next stage; and the bytes per GPU."""
    p, g = s.workload.pipeline_stages, s.cluster.num_gpus
    n = g // p
    nbytes = float(s.workload.tokens_per_gpu * s.model.hidden_size * ACT_BYTES)
    links = []
    for k in range(p - 1):
        src = np.arange(n) + k * n
        links.append(Link(topo.paths(src, src + n), topo.paths(src + n, src), np.full(n, nbytes)))
    return links, nbytes


def run_pipeline(s: Scenario) -> PipelineResult:
    """Simulate one pipelined iteration (inference) or step (training) of a validated scenario."""
    st = stage_scenario(s)
    guard(st)
    stage = run_scenario(st)
    w, p = s.workload, s.workload.pipeline_stages
    m = w.accumulation_steps if w.mode == "training" else (w.pipeline_micro_batches or p)
    fwd, bwd, per, sync = stage_times(s, stage)
    topo = build_topology(s.cluster)
    links, nbytes = hand_overs(s, topo)
    v = w.pipeline_virtual_stages if bwd is not None else 1
    tl = simulate_pipeline(fwd, bwd, m, links, topo.capacity_Bps, topo.latency_s, chunks=v)
    return PipelineResult(summarize(s, st, stage, tl, m, (fwd, bwd, per, sync), nbytes), tl, stage)


def summarize(s: Scenario, st: Scenario, stage: Result, tl: Timeline, m: int, times, nbytes: float) -> dict[str, Any]:
    """The pipelined run's document: the schedule's figures, memory per GPU, throughput, the stage run."""
    fwd, bwd, per, sync = times
    p, g = s.workload.pipeline_stages, s.cluster.num_gpus
    v = s.workload.pipeline_virtual_stages if bwd is not None else 1
    step = tl.step_s
    total = step + sync / p
    tokens = m * s.workload.tokens_per_gpu * (g // p)  # distinct tokens: each enters at stage 0
    xfer = np.array([e - b for *_, b, e in tl.transfers]) if tl.transfers else np.zeros(1)
    sm = stage.summary
    return {
        "scenario": s.name, "seed": s.seed, "model": s.model.name, "gpu": s.cluster.gpu.name,
        "nodes": s.cluster.nodes, "gpus_per_node": s.cluster.gpus_per_node, "mode": s.workload.mode,
        "tokens_per_gpu": s.workload.tokens_per_gpu, "scope": sm.scope,
        "pipeline": {
            "stages": p, "gpus_per_stage": g // p, "micro_batches": m,
            "schedule": ("forward" if bwd is None else "1F1B" if v == 1 else f"interleaved 1F1B ({v} chunks)"),
            "virtual_stages": v,
            "blocks_per_stage": per.tolist(),
            "forward_s_per_micro_batch": fwd.tolist(),
            "backward_s_per_micro_batch": bwd.tolist() if bwd is not None else None,
            "activation_bytes_per_gpu": nbytes,
            "transfer_s": {"count": len(tl.transfers), "mean": float(xfer.mean()), "max": float(xfer.max())},
            "schedule_s": step, "gradient_sync_s": sync / p,
            "bubble_fraction": tl.bubble(), "bubble_fraction_equal_stages": (p - 1) / (m * v + p - 1),
            "busy_s_per_stage": tl.busy_s().tolist(),
        },
        "time_s": total,
        "tokens_per_iteration": tokens,
        "throughput_tokens_per_s": tokens / total,
        "throughput_tokens_per_s_per_gpu": tokens / total / g,
        "memory_per_gpu": memory_per_gpu(st, stages=p),
        "stage_iteration": {"gpus": st.cluster.num_gpus, "time_s": sm.iteration_time_s,
                            "stages": {k: float(v) for k, v in sm.totals.stages.items()},
                            "gpu_load_max_over_mean": float(sm.totals.gpu_load_max_over_mean),
                            "compute_costs": sm.meta.get("compute_costs")},
        "note": ("one iteration DES of every block on one stage's GPUs gives each block's time; blocks split "
                 "evenly over the stages; the schedule runs as its own DES with the activations as flows"),
    }
