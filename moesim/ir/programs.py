"""Layer pieces → stage programs: the forward pass of every MoE layer, and for training its backward pass
and the gradient all-reduces. Pure; the engine runs what this module writes.

Forward, per MoE layer (whole-model scope adds the first four and the last two):
attention_proj → attention_core → norms → dense_ffn → [tp_allreduce] → router → permute → dispatch
(∥ shared_experts when ``comm.overlap_shared_experts``) → regroup → routed_experts → shared_experts →
combine → unpermute → [tail_blocks → head after the last layer]. A tensor-parallel MoE layer (``moe_tp``) has
no dispatch or combine: router → permute → routed_experts → shared_experts → unpermute → moe_allreduce.

Backward (Megatron-Core's alltoall dispatcher in reverse; compute 2× the forward's, one GEMM for the input
gradient and one for the weight gradient per forward GEMM: Narayanan et al., SC'21, §3.1): [bwd_tp_allreduce]
→ bwd_head → bwd_tail_blocks → bwd_unpermute → bwd_dispatch (output gradients to the experts: the combine
pattern reversed) → bwd_regroup → bwd_routed_experts → bwd_shared_experts → bwd_combine (input gradients
back: the dispatch pattern reversed) → bwd_permute → bwd_router → bwd_dense_ffn → bwd_norms →
bwd_attention_core → bwd_attention_proj.
Gradients are BF16 on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.hw.flows import FlowSet
from moesim.ir.overheads import with_overheads
from moesim.ir.program import Comm, Compute, Parallel, Program, Stage
from moesim.ir.resolve import Resolved

GRAD_BYTES = 2  # BF16 gradients


@dataclass(frozen=True)
class LayerPieces:
    """One MoE layer's named compute per GPU ([G] seconds, reserved-SM slowdown applied) and its flows.

    before: attention_proj, attention_core, norms, dense_ffn (whole-model scope); moe: router, permute,
    regroup, routed_experts, shared_experts, unpermute; after: tail_blocks, head (the last MoE layer,
    whole-model scope)."""

    layer: int
    block: int
    before: dict[str, np.ndarray]
    moe: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    dispatch: FlowSet | None  # None: a tensor-parallel MoE layer (no token moves before the experts)
    combine: FlowSet | None
    tp_allreduce: FlowSet | None = None
    moe_allreduce: FlowSet | None = None  # a tensor-parallel MoE layer's output all-reduce


def _computes(parts: dict[str, np.ndarray], names: tuple[str, ...], scale: float = 1.0,
              prefix: str = "") -> list[Stage]:
    """Compute stages for the ``names`` present in ``parts`` with any non-zero time, in that order."""
    return [Compute(prefix + n, parts[n] * scale if scale != 1.0 else parts[n]) for n in names
            if n in parts and np.any(parts[n])]


def forward_program(pc: LayerPieces, r: Resolved, step: int = 0) -> Program:
    """The forward pass of one MoE layer."""
    lk, share = r.links, r.sm_share
    stages = _computes(pc.before, ("attention_proj", "attention_core", "norms", "dense_ffn"))
    if pc.tp_allreduce is not None:
        stages.append(Comm("tp_allreduce", pc.tp_allreduce, lk.collective_latency_s))
    stages += _computes(pc.moe, ("router", "permute"))
    if pc.dispatch is None:  # tensor-parallel experts: the group's tokens on every GPU, then an all-reduce
        stages += _computes(pc.moe, ("routed_experts", "shared_experts", "unpermute"))
        stages.append(Comm("moe_allreduce", pc.moe_allreduce, lk.collective_latency_s))
        stages += _computes(pc.after, ("tail_blocks", "head"))
        return Program(tuple(stages), pc.layer, pc.block, "forward", step)
    dispatch = Comm("dispatch", pc.dispatch, lk.dispatch_latency_s, share, lk.a2a_nvlink_scale)
    overlap = r.scenario.comm.overlap_shared_experts and np.any(pc.moe.get("shared_experts", 0))
    if overlap:  # the shared experts need no dispatched tokens: they run while dispatch is in flight
        stages.append(Parallel(((dispatch,), tuple(_computes(pc.moe, ("shared_experts",))))))
    else:
        stages.append(dispatch)
    stages += _computes(pc.moe, ("regroup", "routed_experts") if overlap else
                        ("regroup", "routed_experts", "shared_experts"))
    stages.append(Comm("combine", pc.combine, lk.combine_latency_s, share, lk.a2a_nvlink_scale))
    stages += _computes(pc.moe, ("unpermute",)) + _computes(pc.after, ("tail_blocks", "head"))
    return Program(tuple(stages), pc.layer, pc.block, "forward", step)


def backward_program(pc: LayerPieces, r: Resolved, step: int = 0) -> Program:
    """The backward pass of one MoE layer (see the module docstring)."""
    lk, share, h = r.links, r.sm_share, r.model.hidden
    stages: list[Stage] = []
    if pc.tp_allreduce is not None:  # the attention all-reduce's backward moves the same bytes
        stages.append(Comm("bwd_tp_allreduce", pc.tp_allreduce, lk.collective_latency_s))
    stages += _computes(pc.after, ("head", "tail_blocks"), 2.0, "bwd_")
    stages += _computes(pc.moe, ("unpermute",), 2.0, "bwd_")
    stages.append(Comm("bwd_dispatch", pc.combine.reversed(GRAD_BYTES * h / r.combine_copy_bytes),
                       lk.dispatch_latency_s, share, lk.a2a_nvlink_scale))
    stages += _computes(pc.moe, ("regroup", "routed_experts", "shared_experts"), 2.0, "bwd_")
    stages.append(Comm("bwd_combine", pc.dispatch.reversed(GRAD_BYTES * h / r.dispatch_copy_bytes),
                       lk.combine_latency_s, share, lk.a2a_nvlink_scale))
    stages += _computes(pc.moe, ("permute", "router"), 2.0, "bwd_")
    stages += _computes(pc.before, ("dense_ffn", "norms", "attention_core", "attention_proj"), 2.0, "bwd_")
    return Program(tuple(stages), pc.layer, pc.block, "backward", step)


def inference_programs(pieces: list[LayerPieces], r: Resolved) -> list[Program]:
    """Every MoE layer's forward pass, with the runtime's overhead stages (``ir.overheads``) when set."""
    progs = [forward_program(pc, r) for pc in pieces]
    rt = r.scenario.runtime
    launch = rt.kernel_launch_s if rt.launch == "eager" else 0.0
    if not progs or (rt.host_overhead_s <= 0 and launch <= 0):
        return progs
    return with_overheads(progs, r.scenario.model.num_hidden_layers, r.scenario.cluster.num_gpus,
                          rt.host_overhead_s, launch)


def _framework_sync(p: Program, seconds: float, r: Resolved) -> Program:
    """``p`` opened by a ``framework_sync`` stage of ``seconds`` on every GPU (none when 0): the training
    framework's wait per MoE layer and pass (``runtime.layer_sync_s``)."""
    if seconds <= 0:
        return p
    stage = Compute("framework_sync", np.full(r.scenario.cluster.num_gpus, seconds))
    return Program((stage, *p.stages), p.layer, p.block, p.pass_, p.step)


def training_programs(pieces: list[LayerPieces], r: Resolved, sync: list[Comm]) -> list[Program]:
    """Forward then backward (last layer first) per accumulation step, every step replaying the same
    routing; the gradient all-reduce stages ``sync`` end the last backward program."""
    out: list[Program] = []
    sync_s = r.scenario.runtime.layer_sync_s or 0.0  # a training framework's wait per MoE layer and pass
    for step in range(r.scenario.workload.accumulation_steps):
        out += [_framework_sync(forward_program(pc, r, step), sync_s, r) for pc in pieces]
        out += [_framework_sync(backward_program(pc, r, step), sync_s, r) for pc in reversed(pieces)]
    if sync:
        last = out[-1]
        out[-1] = Program(last.stages + tuple(sync), last.layer, last.block, last.pass_, last.step)
    return out
