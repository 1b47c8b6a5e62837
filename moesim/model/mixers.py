"""Token mixers that keep a state instead of a KV cache (Gated DeltaNet linear attention, Mamba-2), and the
empty mixer of FFN-only blocks (Nemotron-H)."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from moesim.config.schema import ModelSpec
from moesim.model.attention import ACT_BYTES, AttentionKind


class Recurrent(AttentionKind):
    """A mixer with a constant-size state per sequence instead of a KV cache. Subclasses give the state's
    size (``state_bytes``), the conv's channels (``_conv``), the work per token (``_flops_per_token``) and the
    fields they need (``FIELDS``). A decode step reads and writes the state; prefill streams the conv's
    channels; both split over tensor-parallel heads."""

    kv_split_by_tp = True
    FIELDS: tuple[str, ...] = ()

    @abstractmethod
    def _conv(self, m: ModelSpec) -> int:
        """Channels of the short causal conv (its state: kernel - 1 steps of them)."""

    @abstractmethod
    def _flops_per_token(self, m: ModelSpec, decode: bool) -> float:
        """FLOPs of the mixer's core per token (decode: one step; prefill: with the chunked scan's terms)."""

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return 0.0

    def cached(self, m: ModelSpec, context: float) -> float:
        return 0.0

    def core_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
        group = tokens * tp
        moved = (group / queries * self.state_bytes(m) * 2 / tp if decode else
                 group * self._conv(m) * ACT_BYTES / tp)
        return tokens * self._flops_per_token(m, decode), moved, context

    def requires(self, m: ModelSpec) -> str | None:
        missing = [f for f in self.FIELDS if not getattr(m, f)]
        return missing[0] if missing else None


class GatedDeltaNet(Recurrent):
    """Linear attention with a gated delta rule (Yang et al., ICLR 2025; Qwen3-Next and Qwen3.5's
    ``linear_attention`` blocks): per value head a d_k × d_v state instead of a KV cache, so its cost is
    linear in tokens and its memory constant in context. Projections q, k (key heads), v and the output
    gate z (value heads), the per-head gates a, b, a depthwise causal conv over q, k, v, and the output
    projection. Per token the chunked delta rule costs about 6·n_v·d_k·d_v FLOPs (read, correct and update
    the state) plus the intra-chunk attention of 64-token chunks; a decode step reads and writes the state
    (FP32, as the checkpoints' mamba_ssm_dtype)."""

    name = "linear"
    CHUNK = 64
    FIELDS = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim")

    def _dims(self, m: ModelSpec) -> tuple[int, int, int, int]:
        return m.linear_num_key_heads, m.linear_num_value_heads, m.linear_key_head_dim, m.linear_value_head_dim

    def _conv(self, m: ModelSpec) -> int:
        nk, nv, dk, dv = self._dims(m)
        return 2 * nk * dk + nv * dv

    def params(self, m: ModelSpec) -> float:
        nk, nv, dk, dv = self._dims(m)
        h = m.hidden_size
        proj = h * (2 * nk * dk + 2 * nv * dv) + h * 2 * nv + nv * dv * h
        gate = h * nv * dk if m.linear_channel_gate else 0  # KDA: a forget gate per key channel, full rank
        return float(proj + gate + self._conv(m) * m.linear_conv_kernel_dim + 2 * nv + dv)

    def state_bytes(self, m: ModelSpec) -> float:
        nk, nv, dk, dv = self._dims(m)
        return float(nv * dk * dv * 4 + (m.linear_conv_kernel_dim - 1) * self._conv(m) * ACT_BYTES)

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        return m.linear_key_head_dim, m.linear_value_head_dim

    def cache_heads(self, m: ModelSpec) -> int:
        return m.linear_num_value_heads

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        nk, nv, dk, dv = self._dims(m)
        h = m.hidden_size
        return [(2 * nk * dk + 2 * nv * dv, h), (2 * nv, h), (h, nv * dv)]

    def _flops_per_token(self, m: ModelSpec, decode: bool) -> float:
        nk, nv, dk, dv = self._dims(m)
        return 6.0 * nv * dk * dv + (0 if decode else 2 * nv * (dk + dv) * self.CHUNK / 2)


class Mamba2(Recurrent):
    """A Mamba-2 mixer (Dao & Gu, ICML 2024, state-space duality; Nemotron-H's ``M`` blocks): in_proj to x, z
    (d_inner each), B, C (n_groups x d_state each) and one dt per head, a depthwise conv over x, B, C, and the
    output projection. Per head a head_dim x d_state state (FP32, as mamba_ssm_cache_dtype), constant in
    context; per token about 6 d_inner d_state FLOPs (state update and read-out) plus the intra-chunk terms
    of the chunked scan (128-token chunks)."""

    name = "mamba"
    CHUNK = 128
    FIELDS = ("mamba_num_heads", "mamba_head_dim", "ssm_state_size")

    def _dims(self, m: ModelSpec) -> tuple[int, int, int, int]:
        """(heads, head_dim, d_state, groups)."""
        return m.mamba_num_heads, m.mamba_head_dim, m.ssm_state_size, m.mamba_n_groups

    def _conv(self, m: ModelSpec) -> int:
        nh, hd, n, g = self._dims(m)
        return nh * hd + 2 * g * n

    def params(self, m: ModelSpec) -> float:
        nh, hd, n, g = self._dims(m)
        h, d_in = m.hidden_size, nh * hd
        in_proj = h * (2 * d_in + 2 * g * n + nh)
        return float(in_proj + self._conv(m) * (m.mamba_conv_kernel + 1) + 3 * nh + d_in + d_in * h)

    def state_bytes(self, m: ModelSpec) -> float:
        nh, hd, n, g = self._dims(m)
        return float(nh * hd * n * 4 + (m.mamba_conv_kernel - 1) * self._conv(m) * ACT_BYTES)

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        return m.ssm_state_size, m.mamba_head_dim

    def cache_heads(self, m: ModelSpec) -> int:
        return m.mamba_num_heads

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        nh, hd, n, g = self._dims(m)
        h, d_in = m.hidden_size, nh * hd
        return [(2 * d_in + 2 * g * n + nh, h), (h, d_in)]

    def _flops_per_token(self, m: ModelSpec, decode: bool) -> float:
        nh, hd, n, g = self._dims(m)
        return 6.0 * nh * hd * n + (0 if decode else 2.0 * nh * hd * self.CHUNK)


class NoMixer(AttentionKind):
    """A block without a token mixer: an FFN (MoE) block of Nemotron-H, between its Mamba and attention
    blocks. Nothing to project, attend over or cache."""

    name, mixes = "none", False

    def params(self, m: ModelSpec) -> float:
        return 0.0

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return 0.0

    def cached(self, m: ModelSpec, context: float) -> float:
        return 0.0

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        return 0, 0

    def cache_heads(self, m: ModelSpec) -> int:
        return 0

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        return []
