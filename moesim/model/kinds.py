"""Softmax attention kinds: GQA (and MHA), sliding windows, DeepSeek's MLA and its sparse form (DSA)."""

from __future__ import annotations

import numpy as np

from moesim.config.schema import ModelSpec
from moesim.model.attention import AttentionKind, kv_elem_bytes


class Gqa(AttentionKind):
    """Multi-head attention with grouped KV heads (Ainslie et al. 2023): q, k, v, o projections. Values may
    be narrower than keys (``v_head_dim``, MiMo-V2-Flash)."""

    name, family = "gqa", "gqa"

    shared_kv = True  # full blocks: keys are the values under attention_k_eq_v (Gemma 4's global layers)

    def base_shape(self, m: ModelSpec) -> tuple[int, int, int, int]:
        """(query heads, KV heads, key head dim, value head dim) the model gives for every block."""
        hd = m.head_dim or m.hidden_size // m.num_attention_heads
        vd = m.v_head_dim if m.v_head_dim and not m.kv_lora_rank else hd
        return m.num_attention_heads, m.num_key_value_heads or m.num_attention_heads, hd, vd

    def shape(self, m: ModelSpec) -> tuple[int, int, int, int]:
        """This kind's blocks' shape: the model's, with a global-layer head shape where it gives one."""
        heads, kv, hd, vd = self.base_shape(m)
        if m.global_head_dim:
            hd = vd = m.global_head_dim
        return heads, m.num_global_key_value_heads or kv, hd, vd

    def _kv_tensors(self, m: ModelSpec) -> int:
        """Tensors cached per KV head: K and V, or one when keys are the values."""
        return 1 if m.attention_k_eq_v and self.shared_kv else 2

    def query_heads(self, m: ModelSpec) -> int:
        return self.shape(m)[0]

    def params(self, m: ModelSpec) -> float:
        heads, kv, hd, vd = self.shape(m)
        h = m.hidden_size
        gate = heads * vd * h if m.attn_output_gate else 0  # the output gate widens q_proj (Qwen3-Next)
        v = kv * vd if self._kv_tensors(m) == 2 else 0
        return float(h * (heads * hd + kv * hd + v) + heads * vd * h + gate)

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        _, kv, hd, vd = self.shape(m)
        return float(kv * (hd + (vd if self._kv_tensors(m) == 2 else 0)) * kv_elem_bytes(m))

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        _, _, hd, vd = self.shape(m)
        return hd, vd

    def cache_heads(self, m: ModelSpec) -> int:
        return self.shape(m)[1]

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        heads, kv, hd, vd = self.shape(m)
        h = m.hidden_size
        q = heads * hd + (heads * vd if m.attn_output_gate else 0)
        v = [(kv * vd, h)] if self._kv_tensors(m) == 2 else []
        return [(q, h), (kv * hd, h), *v, (h, heads * vd)]


class Mha(Gqa):
    """Multi-head attention: as many KV heads as query heads."""

    name = "mha"


class SlidingWindow(Gqa):
    """GQA over the last ``sliding_window`` tokens only (Mistral, gpt-oss's sliding layers): a query attends
    over at most the window and the cache keeps at most the window. Its blocks may have their own head shape
    (``sliding_num_attention_heads`` ...: MiMo-V2-Flash's SWA layers); unset fields take the model's."""

    name, shared_kv = "sliding", False

    def shape(self, m: ModelSpec) -> tuple[int, int, int, int]:
        heads, kv, hd, vd = self.base_shape(m)
        hd2 = m.sliding_head_dim or hd
        return (m.sliding_num_attention_heads or heads, m.sliding_num_key_value_heads or kv, hd2,
                m.sliding_v_head_dim or (vd if hd2 == hd else hd2))

    def attended(self, m: ModelSpec, context: float) -> float:
        return min(context, m.sliding_window) if m.sliding_window else context

    def cached(self, m: ModelSpec, context: float) -> float:
        return self.attended(m, context)

    def requires(self, m: ModelSpec) -> str | None:
        return None if m.sliding_window else "sliding_window"


class Mla(AttentionKind):
    """Multi-head latent attention (DeepSeek-V2 §2.1): queries and keys/values through low-rank latents; the
    cache holds the KV latent and the rope key; decode kernels use the absorbed form (FlashMLA)."""

    name, family, kv_split_by_tp = "mla", "mla", False

    def params(self, m: ModelSpec) -> float:
        h, heads = m.hidden_size, m.num_attention_heads
        nope, rope, v = m.qk_nope_head_dim or 128, m.qk_rope_head_dim or 0, m.v_head_dim or 128
        q = h * m.q_lora_rank + m.q_lora_rank * heads * (nope + rope) if m.q_lora_rank else h * heads * (nope + rope)
        kv = h * (m.kv_lora_rank + rope) + m.kv_lora_rank * heads * (nope + v)
        gate = h * heads * v if m.mla_output_gate else 0
        return float(q + kv + heads * v * h + gate + _indexer_params(m))

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return float((m.kv_lora_rank + (m.qk_rope_head_dim or 0)) * kv_elem_bytes(m))

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        rope = m.qk_rope_head_dim or 0
        if decode:
            return m.kv_lora_rank + rope, m.kv_lora_rank
        return (m.qk_nope_head_dim or 128) + rope, m.v_head_dim or 128

    def cache_heads(self, m: ModelSpec) -> int:
        return 1

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        """q_a, q_b (or q), kv_a, kv_b, o; the absorbed decode form multiplies GEMMs of the same sizes."""
        h, heads = m.hidden_size, m.num_attention_heads
        nope, rope, v = m.qk_nope_head_dim or 128, m.qk_rope_head_dim or 0, m.v_head_dim or 128
        q = [(m.q_lora_rank, h), (heads * (nope + rope), m.q_lora_rank)] if m.q_lora_rank else \
            [(heads * (nope + rope), h)]
        return q + [(m.kv_lora_rank + rope, h), (heads * (nope + v), m.kv_lora_rank), (h, heads * v)]


class Dsa(Mla):
    """DeepSeek sparse attention (DeepSeek-V3.2, GLM-5; arXiv 2512.02556 §2.1): MLA whose every query attends
    over the ``index_topk`` keys a lightning indexer picks. The indexer scores every cached key with
    ``index_n_heads`` heads of ``index_head_dim`` in FP8 and keeps one FP8 key (and an FP32 scale) per token
    beside the latent cache."""

    name = "dsa"

    def attended(self, m: ModelSpec, context: float) -> float:
        return min(context, m.index_topk) if m.index_topk else context

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return super().kv_bytes_per_token(m) + (m.index_head_dim or 0) + 4.0

    def side_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The indexer: every query scores every earlier key (causal in prefill), reading the index cache."""
        span = context if decode else context / 2.0
        flops = 2.0 * tokens * m.index_n_heads * m.index_head_dim * span
        per = (m.index_head_dim or 0) + 4.0
        read = tokens * tp / queries * context * per if decode else tokens * tp * per * 2
        return flops, read

    def requires(self, m: ModelSpec) -> str | None:
        missing = [f for f in ("index_topk", "index_n_heads", "index_head_dim") if not getattr(m, f)]
        return missing[0] if missing else None


def _indexer_params(m: ModelSpec) -> float:
    """DeepSeek sparse attention's lightning indexer (V3.2, GLM-5): query heads from the query latent, one
    key head and the per-head weights from the hidden state."""
    if not (m.index_n_heads and m.index_head_dim):
        return 0.0
    q_in = m.q_lora_rank or m.hidden_size
    return float(q_in * m.index_n_heads * m.index_head_dim + m.hidden_size * (m.index_head_dim + m.index_n_heads))


class Compressed(AttentionKind):
    """DeepSeek-V4's compressed attention (DeepSeek-V4 report: CSA and HCA). Keys and values (one shared
    head of ``head_dim``, as multi-query attention) are pooled ``ratio`` tokens to one; a query attends over
    the compressed entries (CSA: the ``index_topk`` an indexer picks, as DSA; HCA: all of them) and over a
    ``sliding_window`` of raw tokens. Queries through a LoRA (``q_lora_rank``), the output projection in
    ``o_groups`` LoRA groups (``o_lora_rank``). Assumed where the config says no more: the compressor costs
    a gate and a value projection (2 · H · head_dim), the cache keeps one BF16/FP8 entry of head_dim per
    compressed and per windowed token."""

    family = ""
    kv_split_by_tp = False
    sparse = False

    def ratio(self, m: ModelSpec) -> int:
        return m.csa_ratio if self.sparse else m.hca_ratio

    def _window(self, m: ModelSpec, context: float) -> float:
        return min(context, m.sliding_window or 0)

    def params(self, m: ModelSpec) -> float:
        h, heads, hd, q = m.hidden_size, m.num_attention_heads, m.head_dim, m.q_lora_rank or 0
        q_proj = h * q + q * heads * hd if q else h * heads * hd
        o = heads * hd * m.o_lora_rank + m.o_groups * m.o_lora_rank * h if m.o_lora_rank else heads * hd * h
        return float(q_proj + h * hd + o + 2 * h * hd + (_indexer_params(m) if self.sparse else 0))

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return float(m.head_dim * kv_elem_bytes(m) + ((m.index_head_dim or 0) + 4.0 if self.sparse else 0.0))

    def cached(self, m: ModelSpec, context: float) -> float:
        return context / self.ratio(m) + self._window(m, context)

    def attended(self, m: ModelSpec, context: float) -> float:
        pooled = context / self.ratio(m)
        return (min(pooled, m.index_topk or pooled) if self.sparse else pooled) + self._window(m, context)

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        return m.head_dim, m.head_dim

    def cache_heads(self, m: ModelSpec) -> int:
        return 1

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        h, heads, hd, q = m.hidden_size, m.num_attention_heads, m.head_dim, m.q_lora_rank or 0
        qp = [(q, h), (heads * hd, q)] if q else [(heads * hd, h)]
        o = [(m.o_lora_rank * m.o_groups, heads * hd), (h, m.o_groups * m.o_lora_rank)] if m.o_lora_rank else \
            [(h, heads * hd)]
        return qp + [(hd, h), (2 * hd, h)] + o

    def side_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """CSA's indexer over the compressed keys (as DSA's over raw ones); HCA has none."""
        if not self.sparse:
            return np.zeros_like(tokens), np.zeros_like(tokens)
        pooled = context / self.ratio(m)
        flops = 2.0 * tokens * m.index_n_heads * m.index_head_dim * (pooled if decode else pooled / 2.0)
        per = m.index_head_dim + 4.0
        return flops, (tokens * tp / queries * pooled * per if decode else tokens * tp * per * 2)

    def requires(self, m: ModelSpec) -> str | None:
        need = ("head_dim", "sliding_window") + (("index_topk", "index_n_heads", "index_head_dim")
                                                 if self.sparse else ())
        missing = [f for f in need if not getattr(m, f)]
        return missing[0] if missing else None


class Csa(Compressed):
    """Compressed sparse attention: top-k of the compressed entries (``csa_ratio``) plus the window."""

    name, sparse = "csa", True


class Hca(Compressed):
    """Heavily compressed attention: every compressed entry (``hca_ratio``) plus the window."""

    name = "hca"

