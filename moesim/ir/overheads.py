"""The serving engine's own time as named stages (``runtime``): per-iteration host work and, without CUDA
graphs, the launch of every kernel. Both ``estimated`` until fitted on measured deployments; default 0.

Kernels per stage follow the roofline's own kernels (moesim.hw.costs.roofline, moesim.ir.blocks): per block
4 attention projections, 1 attention core, 2 RMSNorms, and a dense FFN's gate-up, activation and down; per
MoE layer the router GEMM and top-k, the permute, the regroup's two permutes (expert parallel with several
local experts), gate-up, activation and down of the routed and of the shared experts, and the unpermute; the
output head once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.ir.program import HOST, Compute, Program

PER_BLOCK = {"attention_proj": 4, "attention_core": 1, "norms": 2, "dense_ffn": 3}
PER_LAYER = {"router": 2, "permute": 1, "regroup": 2, "routed_experts": 3, "shared_experts": 3, "unpermute": 1,
             "head": 1}


def kernels(program: Program, blocks: int, trailing: int) -> int:
    """Kernels one pass of ``program`` launches: its stages' kernels, block-level ones once per block it
    covers (``blocks`` before the MoE layer, ``trailing`` dense blocks after the last one)."""
    names = set(program.names)
    attention = sum(k for n, k in PER_BLOCK.items() if n in names and n != "dense_ffn")
    dense = PER_BLOCK["dense_ffn"] if "dense_ffn" in names else 0  # the blocks before the MoE layer's own
    tail = sum(PER_BLOCK.values()) * trailing if "tail_blocks" in names else 0
    return attention * blocks + dense * (blocks - 1) + tail + sum(k for n, k in PER_LAYER.items() if n in names)


def with_overheads(programs: list[Program], model_blocks: int, gpus: int, host_s: float, launch_s: float
                   ) -> list[Program]:
    """``programs`` (one forward pass per MoE layer, in order) with a ``host_overhead`` stage on the host at
    the start of the iteration and a ``kernel_launch`` stage closing each layer (eager launches)."""
    out, prev = [], -1
    for i, p in enumerate(programs):
        stages = p.stages
        if launch_s > 0:
            trailing = model_blocks - 1 - p.block if i == len(programs) - 1 else 0
            n = kernels(p, p.block - prev, trailing)
            stages = stages + (Compute("kernel_launch", np.full(gpus, n * launch_s)),)
        if host_s > 0 and i == 0:
            stages = (Compute("host_overhead", np.full(gpus, host_s), HOST),) + stages
        out.append(replace(p, stages=stages))
        prev = p.block
    return out
