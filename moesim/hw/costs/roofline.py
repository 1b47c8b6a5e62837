"""Compute-time cost model: pure functions of token counts and a GPU profile. Times in seconds.

Expert FFN (SwiGLU, three GEMMs run as two grouped kernels, gate+up fused then down, plus the activation):
each kernel is bound by FLOPs or by bytes (roofline; Williams et al., CACM 2009). Rows are padded per expert
to the GEMM tile height (grouped GEMMs tile M per expert, hardware.md), and an expert with any token streams
all its weights from HBM (3·H·F·bytes per active expert), which dominates at small batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.config.schema import GpuSpecIn
from moesim.hw.costs.base import CostModel
from moesim.model.moe import FP4_FAMILY, MoEModel

ACT_BYTES = 2  # activations in BF16


@dataclass(frozen=True)
class ComputeCosts:
    """The GPU figures the compute model uses, plus the model's weight format."""

    peak_flops: float  # at the expert weights' GEMM rate
    peak_bf16_flops: float
    hbm_Bps: float
    gemm_eff: float
    mem_eff: float
    kernel_s: float
    tile: int

    @classmethod
    def from_gpu(cls, gpu: GpuSpecIn, weight_dtype: str) -> ComputeCosts:
        """FP8 weights run at the FP8 rate; FP4 weights (NVFP4, MXFP4) at the FP4 rate on GPUs with FP4 tensor
        cores (Blackwell), else dequantised to BF16 (Hopper's Marlin-style kernels)."""
        fp4 = weight_dtype in FP4_FAMILY and gpu.peak_fp4_flops
        peak = (gpu.peak_fp4_flops if fp4 else gpu.peak_fp8_flops if weight_dtype == "fp8" else gpu.peak_bf16_flops)
        return cls(peak, gpu.peak_bf16_flops, gpu.hbm_bandwidth, gpu.gemm_efficiency, gpu.memory_efficiency,
                   gpu.kernel_overhead, gpu.tile_rows)

    def kernel(self, flops: np.ndarray, nbytes: np.ndarray, peak: float | None = None) -> np.ndarray:
        """One kernel's time: launch overhead + max(FLOP time, memory time)."""
        ft = np.asarray(flops) / ((peak or self.peak_flops) * self.gemm_eff)
        mt = np.asarray(nbytes) / (self.hbm_Bps * self.mem_eff)
        return self.kernel_s + np.maximum(ft, mt)


def expert_time(slot_tokens: np.ndarray, model: MoEModel, c: ComputeCosts) -> np.ndarray:
    """Routed-expert FFN time per GPU. slot_tokens [G, S] tokens per local expert slot -> [G] seconds."""
    h, f, wb, u = model.expert_hidden, model.inter, model.weight_bytes_per_param, model.up_mats
    active = slot_tokens > 0
    rows = np.where(active, np.ceil(slot_tokens / c.tile) * c.tile, 0.0).sum(axis=1)
    tokens = slot_tokens.sum(axis=1)
    n_active = active.sum(axis=1)
    gate_up = c.kernel(2 * rows * h * u * f, n_active * u * h * f * wb + tokens * (h + u * f) * ACT_BYTES)
    act = c.kernel(0.0, tokens * (u + 1) * f * ACT_BYTES)  # SiLU(gate)·up: read 2F, write F per token
    down = c.kernel(2 * rows * f * h, n_active * f * h * wb + tokens * (f + h) * ACT_BYTES)
    return np.where(n_active > 0, gate_up + act + down, 0.0)


def shared_expert_time(tokens: np.ndarray, model: MoEModel, c: ComputeCosts) -> np.ndarray:
    """Shared-expert FFN time per GPU for ``tokens`` [G] local tokens (always on, no dispatch)."""
    if not model.shared_inter:
        return np.zeros_like(tokens, dtype=float)
    h, f, wb, u = model.hidden, model.shared_inter, model.weight_bytes_per_param, model.up_mats
    rows = np.ceil(tokens / c.tile) * c.tile
    gate_up = c.kernel(2 * rows * h * u * f, u * h * f * wb + tokens * (h + u * f) * ACT_BYTES)
    act = c.kernel(0.0, tokens * (u + 1) * f * ACT_BYTES)
    down = c.kernel(2 * rows * f * h, f * h * wb + tokens * (f + h) * ACT_BYTES)
    return gate_up + act + down


def router_time(tokens: np.ndarray, model: MoEModel, c: ComputeCosts) -> np.ndarray:
    """Router GEMM (H×E, BF16) + top-k per GPU [G]."""
    h, e = model.hidden, model.experts
    gemm = c.kernel(2 * tokens * h * e, tokens * h * ACT_BYTES + h * e * ACT_BYTES + tokens * e * 4,
                    peak=c.peak_bf16_flops)
    return gemm + c.kernel(0.0, tokens * e * 4)


def permute_time(tokens: np.ndarray, model: MoEModel, top_k: int, c: ComputeCosts) -> np.ndarray:
    """Permute: read each token and write its k copies, grouped by destination, per GPU [G]."""
    return c.kernel(0.0, tokens * model.hidden * ACT_BYTES * (1 + top_k))


def gate_time(tokens: np.ndarray, model: MoEModel, top_k: int, c: ComputeCosts) -> np.ndarray:
    """Router + permute per GPU [G]."""
    return router_time(tokens, model, c) + permute_time(tokens, model, top_k, c)


def combine_time(tokens: np.ndarray, model: MoEModel, top_k: int, c: ComputeCosts) -> np.ndarray:
    """Unpermute with weighted sum of the k expert outputs per token [G]."""
    return c.kernel(2.0 * tokens * top_k * model.hidden, tokens * model.hidden * ACT_BYTES * (top_k + 1))


class RooflineCosts(CostModel):
    """The engine's compute costs from GPU figures (datasheet / published / estimated)."""

    def __init__(self, c: ComputeCosts, model: MoEModel, top_k: int) -> None:
        self.c, self.model, self.k = c, model, top_k
        self.source = "roofline on the GPU figures"

    def gate(self, tokens: np.ndarray) -> np.ndarray:
        return gate_time(tokens, self.model, self.k, self.c)

    def router(self, tokens: np.ndarray) -> np.ndarray:
        return router_time(tokens, self.model, self.c)

    def permute(self, tokens: np.ndarray) -> np.ndarray:
        return permute_time(tokens, self.model, self.k, self.c)

    def unpermute(self, tokens: np.ndarray) -> np.ndarray:
        return combine_time(tokens, self.model, self.k, self.c)

    def expert(self, slot_tokens: np.ndarray, regroup: bool = False) -> np.ndarray:
        t = expert_time(slot_tokens, self.model, self.c)
        return t + self.regroup(slot_tokens) if regroup else t

    def regroup(self, slot_tokens: np.ndarray) -> np.ndarray:
        """Sort received copies by local expert before the GEMMs and back after: two permutes [G]."""
        copies = slot_tokens.sum(axis=1)
        if slot_tokens.shape[1] <= 1:
            return np.zeros(copies.shape)
        return np.where(copies > 0, 2 * self.c.kernel(0.0, 2 * copies * self.model.hidden * ACT_BYTES), 0.0)

    def shared(self, tokens: np.ndarray) -> np.ndarray:
        return shared_expert_time(tokens, self.model, self.c)
