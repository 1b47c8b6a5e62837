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


class Gqa(AttentionKind):
    """Multi-head attention with grouped KV heads (Ainslie et al. 2023): q, k, v, o projections."""

    name, family = "gqa", "gqa"

    def _hd(self, m: ModelSpec) -> int:
        return m.head_dim or m.hidden_size // m.num_attention_heads

    def params(self, m: ModelSpec) -> float:
        h, heads, hd = m.hidden_size, m.num_attention_heads, self._hd(m)
        return float(h * (heads + 2 * self.cache_heads(m)) * hd + heads * hd * h)

    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        return float(2 * self.cache_heads(m) * self._hd(m) * kv_elem_bytes(m))

    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        return self._hd(m), self._hd(m)

    def cache_heads(self, m: ModelSpec) -> int:
        return m.num_key_value_heads or m.num_attention_heads

    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        h, heads, hd, kv = m.hidden_size, m.num_attention_heads, self._hd(m), self.cache_heads(m)
        return [(heads * hd, h), (kv * hd, h), (kv * hd, h), (h, heads * hd)]


class Mha(Gqa):
    """Multi-head attention: as many KV heads as query heads."""

    name = "mha"


class SlidingWindow(Gqa):
    """GQA over the last ``sliding_window`` tokens only (Mistral, gpt-oss's sliding layers): a query attends
    over at most the window and the cache keeps at most the window."""

    name = "sliding"

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
    """KV bytes one sequence of ``context`` tokens keeps over all blocks (one GPU of a TP group of ``tp``)."""
    return sum(k.cached(m, context) * k.kv_bytes_per_token(m) * n * _copies(k, tp) for k, n in _kinds(m))


def attention_kind_label(m: ModelSpec) -> str | None:
    """The summary's ``attention_kind``: the one kind of every block, ``a+b`` for a hybrid, None without a shape."""
    if not m.has_attention_shape:
        return None
    return "+".join(kinds_of(m))
