"""The model as a list of layer specs: per block its attention kind (with the shape the model gives) and its
FFN kind (dense, or MoE with the routed-expert shape).

Attention kinds are classes behind one interface (``AttentionKind``), kept in ``LAYER_KINDS``: parameters,
KV bytes per cached token, the core's dimensions, how many tokens a query attends over and how many stay
cached, the projections as GEMMs, and whether tensor parallelism splits the cache. Memory, the attention
costs, the KV transfer of disaggregated serving and the summary read a block's kind through it, so a new
kind (sliding-window, linear, state-space) is one class and one ``LAYER_KINDS.register``: no ``if`` on the
kind anywhere else. Shapes: ``ModelSpec`` fields (Hugging Face names), elements; bytes in BF16 (the KV cache).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass

import numpy as np

from moesim.config.schema import ModelSpec
from moesim.model.moe import MoEModel
from moesim.util.registry import Registry

ACT_BYTES = 2  # BF16 activations
KV_BYTES = {"bf16": 2, "fp8": 1}  # per cached element, by model.kv_cache_dtype


def kv_elem_bytes(m: ModelSpec) -> int:
    """Bytes of one cached key/value element (``model.kv_cache_dtype``)."""
    return KV_BYTES[m.kv_cache_dtype]


class AttentionKind(ABC):
    """One attention kind. Methods take the ``ModelSpec`` that carries the shape; numbers are per block."""

    name = ""
    kv_split_by_tp = True  # tensor parallelism splits the cache by KV head (MLA's latent is whole on every rank)
    family = ""  # the family of measured attention tables that times it ("gqa", "mla"; "": none, roofline)

    @abstractmethod
    def params(self, m: ModelSpec) -> float:
        """Parameters of one block's attention."""

    @abstractmethod
    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        """Bytes of KV cache per cached token."""

    @abstractmethod
    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        """(d_qk, d_v) per head of the attention core, prefill or decode form."""

    @abstractmethod
    def cache_heads(self, m: ModelSpec) -> int:
        """Heads of the cached keys and values (GQA's KV heads; one shared latent for MLA)."""

    @abstractmethod
    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        """(n, k) of the block's projection GEMMs."""

    def attended(self, m: ModelSpec, context: float) -> float:
        """Tokens one query attends over in a sequence of ``context`` tokens (decode: the whole cache)."""
        return context

    def cached(self, m: ModelSpec, context: float) -> float:
        """Tokens of KV cache a sequence of ``context`` tokens keeps."""
        return context

    def requires(self, m: ModelSpec) -> str | None:
        """The model field this kind needs and ``m`` lacks (checked with the scenario), or None."""
        return None

    def state_bytes(self, m: ModelSpec) -> float:
        """Bytes a sequence keeps whatever its length (a recurrent state: linear attention, SSMs); 0 here."""
        return 0.0

    def query_heads(self, m: ModelSpec) -> int:
        """Query heads of this kind's blocks (the model's, unless the kind has its own shape)."""
        return m.num_attention_heads

    def side_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, bytes) of work beside the core that a measured core table does not time (DSA's indexer)."""
        return np.zeros_like(tokens), np.zeros_like(tokens)

    def core_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
        """The attention core of one block on one GPU: (FLOPs [G], bytes of cache read [G], keys one query
        attends over). ``tokens`` per GPU of an attention-TP group of ``tp`` (the group's tp·T tokens, 1/tp of
        the heads each); ``queries`` decode queries per sequence (MTP verify). Scores and values over the
        attended keys: prefill causal (``causal_span``), decode over the cache, read once per sequence."""
        dqk, dv = self.core_dims(m, decode)
        seen = self.attended(m, context)
        span = seen if decode else causal_span(seen, context)
        flops = 2.0 * tokens * self.query_heads(m) * (dqk + dv) * span
        share = 1.0 / tp if self.kv_split_by_tp else 1.0
        kvb, group = self.kv_bytes_per_token(m), tokens * tp
        cache = group / queries * seen * kvb * share if decode else group * kvb * 2 * share
        return flops, cache, seen


def causal_span(window: float, context: float) -> float:
    """Mean keys per query of causal prefill over ``context`` tokens when each query sees at most ``window``
    keys: context / 2 without a window (window = context)."""
    if window >= context:
        return context / 2.0
    return window - window * window / (2.0 * context)


class Gqa(AttentionKind):
    """Multi-head attention with grouped KV heads (Ainslie et al. 2023): q, k, v, o projections. Values may
    be narrower than keys (``v_head_dim``, MiMo-V2-Flash)."""

    name, family = "gqa", "gqa"

    def shape(self, m: ModelSpec) -> tuple[int, int, int, int]:
        """(query heads, KV heads, key head dim, value head dim) of this kind's blocks."""
        hd = m.head_dim or m.hidden_size // m.num_attention_heads
        vd = m.v_head_dim if m.v_head_dim and not m.kv_lora_rank else hd
        return m.num_attention_heads, m.num_key_value_heads or m.num_attention_heads, hd, vd

    def query_heads(self, m: ModelSpec) -> int:
        return self.shape(m)[0]

    def params(self, m: ModelSpec) -> float:
        heads, kv, hd, vd = self.shape(m)
        h = m.hidden_size
        gate = heads * vd * h if m.attn_output_gate else 0  # the output gate widens q_proj (Qwen3-Next)
        return float(h * (heads * hd + kv * (hd + vd)) + heads * vd * h + gate)

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        _, kv, hd, vd = self.shape(m)
        return float(kv * (hd + vd) * kv_elem_bytes(m))

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        _, _, hd, vd = self.shape(m)
        return hd, vd

    def cache_heads(self, m: ModelSpec) -> int:
        return self.shape(m)[1]

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        heads, kv, hd, vd = self.shape(m)
        h = m.hidden_size
        q = heads * hd + (heads * vd if m.attn_output_gate else 0)
        return [(q, h), (kv * hd, h), (kv * vd, h), (h, heads * vd)]


class Mha(Gqa):
    """Multi-head attention: as many KV heads as query heads."""

    name = "mha"


class SlidingWindow(Gqa):
    """GQA over the last ``sliding_window`` tokens only (Mistral, gpt-oss's sliding layers): a query attends
    over at most the window and the cache keeps at most the window. Its blocks may have their own head shape
    (``sliding_num_attention_heads`` ...: MiMo-V2-Flash's SWA layers); unset fields take the model's."""

    name = "sliding"

    def shape(self, m: ModelSpec) -> tuple[int, int, int, int]:
        heads, kv, hd, vd = super().shape(m)
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
        return float(q + kv + heads * v * h + _indexer_params(m))

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


class GatedDeltaNet(AttentionKind):
    """Linear attention with a gated delta rule (Yang et al., ICLR 2025; Qwen3-Next and Qwen3.5's
    ``linear_attention`` blocks): per value head a d_k × d_v state instead of a KV cache, so its cost is
    linear in tokens and its memory constant in context. Projections q, k (key heads), v and the output
    gate z (value heads), the per-head gates a, b, a depthwise causal conv over q, k, v, and the output
    projection. Per token the chunked delta rule costs about 6·n_v·d_k·d_v FLOPs (read, correct and update
    the state) plus the intra-chunk attention of 64-token chunks; a decode step reads and writes the state
    (FP32, as the checkpoints' mamba_ssm_dtype)."""

    name, kv_split_by_tp = "linear", True
    CHUNK = 64

    def _dims(self, m: ModelSpec) -> tuple[int, int, int, int]:
        return m.linear_num_key_heads, m.linear_num_value_heads, m.linear_key_head_dim, m.linear_value_head_dim

    def _conv(self, m: ModelSpec) -> int:
        nk, nv, dk, dv = self._dims(m)
        return 2 * nk * dk + nv * dv

    def params(self, m: ModelSpec) -> float:
        nk, nv, dk, dv = self._dims(m)
        h = m.hidden_size
        proj = h * (2 * nk * dk + 2 * nv * dv) + h * 2 * nv + nv * dv * h
        return float(proj + self._conv(m) * m.linear_conv_kernel_dim + 2 * nv + dv)

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return 0.0

    def cached(self, m: ModelSpec, context: float) -> float:
        return 0.0

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

    def core_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
        nk, nv, dk, dv = self._dims(m)
        intra = 0 if decode else 2 * nv * (dk + dv) * self.CHUNK / 2
        flops = tokens * (6.0 * nv * dk * dv + intra)
        group = tokens * tp
        moved = (group / queries * self.state_bytes(m) * 2 / tp if decode else
                 group * self._conv(m) * ACT_BYTES / tp)
        return flops, moved, context

    def requires(self, m: ModelSpec) -> str | None:
        missing = [f for f in ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
                               "linear_value_head_dim") if not getattr(m, f)]
        return missing[0] if missing else None


def _indexer_params(m: ModelSpec) -> float:
    """DeepSeek sparse attention's lightning indexer (V3.2, GLM-5): query heads from the query latent, one
    key head and the per-head weights from the hidden state."""
    if not (m.index_n_heads and m.index_head_dim):
        return 0.0
    q_in = m.q_lora_rank or m.hidden_size
    return float(q_in * m.index_n_heads * m.index_head_dim + m.hidden_size * (m.index_head_dim + m.index_n_heads))


LAYER_KINDS: Registry[AttentionKind] = Registry("attention kind", "model.attention_kinds")
LAYER_KINDS.register("mha", Mha(), help="multi-head attention (as many KV heads as query heads)")
LAYER_KINDS.register("gqa", Gqa(), help="grouped-query attention (fewer KV heads than query heads)")
LAYER_KINDS.register("mla", Mla(), help="DeepSeek's multi-head latent attention (kv_lora_rank set)")
LAYER_KINDS.register("sliding", SlidingWindow(), help="GQA over the last model.sliding_window tokens")
LAYER_KINDS.register("dsa", Dsa(), help="DeepSeek sparse attention: MLA over the index_topk keys an indexer picks")
LAYER_KINDS.register("linear", GatedDeltaNet(), help="Gated DeltaNet linear attention: a constant-size state "
                     "per sequence (Qwen3-Next, Qwen3.5)")


@dataclass(frozen=True)
class LayerSpec:
    """One block: its index, its attention kind (a ``LAYER_KINDS`` name) and its FFN: ``moe`` (routed experts
    of intermediate size ``ffn_inter``, ``experts`` of them, plus the shared experts) or ``dense`` (one SwiGLU
    FFN of intermediate size ``ffn_inter``; 0 when the model does not give it)."""

    index: int
    attention: str
    ffn: str
    ffn_inter: int = 0
    experts: int = 0

    @property
    def kind(self) -> AttentionKind:
        return LAYER_KINDS.get(self.attention)


def default_kind(m: ModelSpec) -> str:
    """The kind of a block whose model names none: MLA when ``kv_lora_rank`` is set, else GQA or MHA."""
    if m.kv_lora_rank:
        return "mla"
    kv = m.num_key_value_heads or m.num_attention_heads
    return "gqa" if kv < m.num_attention_heads else "mha"


FULL = "full"  # in ``model.attention_kinds``: the model's full-attention kind (``default_kind``)


def attention_kinds(m: ModelSpec) -> tuple[str, ...]:
    """Each block's attention kind (``model.attention_kinds``; ``full`` or absent: the default kind)."""
    full = default_kind(m)
    return tuple(full if k == FULL else k for k in m.attention_kinds) or (full,) * m.num_hidden_layers


def layer_specs(m: ModelSpec) -> tuple[LayerSpec, ...]:
    """Every block of ``m``: its attention kind and its FFN."""
    moe = set(MoEModel.from_spec(m).moe_layer_ids)
    kinds = attention_kinds(m)
    return tuple(LayerSpec(i, kinds[i], "moe", m.moe_intermediate_size, m.n_routed_experts) if i in moe else
                 LayerSpec(i, kinds[i], "dense", m.intermediate_size or 0) for i in range(m.num_hidden_layers))


def kinds_of(m: ModelSpec) -> dict[str, int]:
    """Blocks per attention kind, in first-seen order."""
    return dict(Counter(attention_kinds(m)))


def _kinds(m: ModelSpec) -> list[tuple[AttentionKind, int]]:
    return [(LAYER_KINDS.get(k), n) for k, n in kinds_of(m).items()]


def _copies(kind: AttentionKind, tp: int) -> int:
    """How many of a TP group's sequences one GPU caches whole: 1 when TP splits the kind's cache, else tp."""
    return 1 if kind.kv_split_by_tp else tp


def attention_params_all(m: ModelSpec) -> float:
    """Attention parameters of every block."""
    return sum(k.params(m) * n for k, n in _kinds(m))


def kv_bytes_all_blocks(m: ModelSpec, tp: int = 1) -> float:
    """KV bytes per cached token summed over the blocks, for one GPU of an attention-TP group of ``tp``."""
    return sum(k.kv_bytes_per_token(m) * n * _copies(k, tp) for k, n in _kinds(m))


def kv_cache_bytes(m: ModelSpec, context: float, tp: int = 1) -> float:
    """KV bytes one sequence of ``context`` tokens keeps over all blocks (one GPU of a TP group of ``tp``),
    recurrent states included."""
    return sum((k.cached(m, context) * k.kv_bytes_per_token(m) + k.state_bytes(m)) * n * _copies(k, tp)
               for k, n in _kinds(m))


def state_bytes_all_blocks(m: ModelSpec, tp: int = 1) -> float:
    """Bytes of recurrent state one sequence keeps over all blocks, whatever its length (0: attention only)."""
    return sum(k.state_bytes(m) * n * _copies(k, tp) for k, n in _kinds(m))


def attention_kind_label(m: ModelSpec) -> str | None:
    """The summary's ``attention_kind``: the one kind of every block, ``a+b`` for a hybrid, None without a shape."""
    if not m.has_attention_shape:
        return None
    return "+".join(kinds_of(m))
