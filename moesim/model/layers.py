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

from collections import Counter
from dataclasses import dataclass

from moesim.config.schema import ModelSpec
from moesim.model.attention import ACT_BYTES, KV_BYTES, AttentionKind, causal_span, kv_elem_bytes
from moesim.model.kinds import Csa, Dsa, Gqa, Hca, Mha, Mla, SlidingWindow
from moesim.model.mixers import GatedDeltaNet, Mamba2, NoMixer
from moesim.model.moe import MoEModel
from moesim.util.registry import Registry

__all__ = ["ACT_BYTES", "KV_BYTES", "LAYER_KINDS", "AttentionKind", "LayerSpec", "causal_span", "kv_elem_bytes"]

LAYER_KINDS: Registry[AttentionKind] = Registry("attention kind", "model.attention_kinds")
LAYER_KINDS.register("mha", Mha(), help="multi-head attention (as many KV heads as query heads)")
LAYER_KINDS.register("gqa", Gqa(), help="grouped-query attention (fewer KV heads than query heads)")
LAYER_KINDS.register("mla", Mla(), help="DeepSeek's multi-head latent attention (kv_lora_rank set)")
LAYER_KINDS.register("sliding", SlidingWindow(), help="GQA over the last model.sliding_window tokens")
LAYER_KINDS.register("csa", Csa(), help="DeepSeek-V4 compressed sparse attention: top-k pooled entries + a window")
LAYER_KINDS.register("hca", Hca(), help="DeepSeek-V4 heavily compressed attention: every pooled entry + a window")
LAYER_KINDS.register("dsa", Dsa(), help="DeepSeek sparse attention: MLA over the index_topk keys an indexer picks")
LAYER_KINDS.register("mamba", Mamba2(), help="a Mamba-2 state-space mixer: a constant state per sequence "
                     "(Nemotron-H)")
LAYER_KINDS.register("none", NoMixer(), help="no token mixer: an FFN-only block (Nemotron-H's MoE blocks)")
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
    ffn = m.ffn_kinds or tuple("moe" if i in moe else "dense" for i in range(m.num_hidden_layers))
    return tuple(LayerSpec(i, kinds[i], "moe", m.moe_intermediate_size, m.n_routed_experts) if ffn[i] == "moe" else
                 LayerSpec(i, kinds[i], ffn[i], m.intermediate_size or 0 if ffn[i] == "dense" else 0)
                 for i in range(m.num_hidden_layers))


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
