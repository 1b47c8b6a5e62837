"""Parameters and memory per GPU from a model's shape: what must fit in one GPU's HBM.

Parameter counts (per model, elements):
- attention: each block's kind (``moesim.model.layers``): MHA/GQA ``H·(heads + 2·kv_heads)·head_dim +
  heads·head_dim·H``; MLA (DeepSeek-V2/V3) ``H·q_lora + q_lora·heads·(nope + rope) + H·(kv_lora + rope) +
  kv_lora·heads·(nope + v) + heads·v·H`` (without q_lora: ``H·heads·(nope + rope)``);
- dense FFN blocks ``3·H·intermediate_size``; per MoE block routed experts ``E·3·H·F``, shared ``3·H·F_shared``,
  router ``E·H``; embeddings and output head ``V·H`` each (one if tied).
Active parameters leave out the input embedding (a lookup), as DeepSeek's and OpenAI's published figures
do; ``active_with_embedding`` counts it, as Mistral's and Qwen's do. Checked in tests against the published
figures of the catalogue models and of the Hugging Face corpus (tests/fixtures/hf-configs).

Per GPU (expert parallel for the routed experts, data-parallel attention as DeepSeek and SGLang serve):
every non-expert weight is replicated; each GPU holds its slots' experts (replicas included); decode keeps a
KV cache of ``tokens_per_gpu`` sequences of ``context_tokens`` (a sliding-window block keeps its window);
dispatch/combine buffers hold the received copies.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.config.schema import ModelSpec, Scenario
from moesim.model.layers import (
    ACT_BYTES,
    LAYER_KINDS,
    attention_params_all,
    default_kind,
    kv_bytes_all_blocks,
    kv_cache_bytes,
)
from moesim.model.moe import BYTES_PER_PARAM, MoEModel


@dataclass(frozen=True)
class ParamCounts:
    attention: float  # all blocks
    dense_ffn: float
    routed_experts: float
    shared_experts: float
    router: float
    embeddings: float
    active: float  # parameters a token multiplies with: all but the input embedding (a lookup) and the
    # routed experts it does not choose; the convention of DeepSeek's and OpenAI's published figures
    input_embedding: float = 0.0  # the input embedding (0 when tied: the one matrix is the output head)

    @property
    def active_with_embedding(self) -> float:
        """Active parameters counting the input embedding too (Mistral's and Qwen's published figures)."""
        return self.active + self.input_embedding

    @property
    def total(self) -> float:
        return (self.attention + self.dense_ffn + self.routed_experts + self.shared_experts + self.router
                + self.embeddings)


def has_shape(m: ModelSpec) -> bool:
    return m.has_attention_shape


def kv_bytes_per_token(m: ModelSpec) -> float:
    """KV cache bytes per token of one block of the model's default attention kind (``model.layers``)."""
    return LAYER_KINDS.get(default_kind(m)).kv_bytes_per_token(m)


def param_counts(m: ModelSpec) -> ParamCounts:
    moe = MoEModel.from_spec(m)
    blocks, n_moe = m.num_hidden_layers, moe.num_moe_layers
    h, f = m.hidden_size, m.moe_intermediate_size
    mats = 3 if m.expert_gated else 2  # gate, up, down; squared-ReLU FFNs have no gate
    expert = mats * (m.expert_hidden_size or h) * f
    latent = 2.0 * h * m.expert_hidden_size * n_moe if m.expert_hidden_size else 0.0  # down to and up from it
    dense_inter = m.intermediate_size or 0
    attn = attention_params_all(m)
    dense_blocks = m.ffn_kinds.count("dense") if m.ffn_kinds else blocks - n_moe
    dense = float(mats) * h * dense_inter * dense_blocks
    routed = float(m.n_routed_experts * expert * n_moe)
    shared = float(mats) * h * moe.shared_inter * n_moe
    router = float(m.n_routed_experts * h * n_moe) + latent  # (with a latent MoE's two projections)
    emb = float(m.vocab_size * h * (1 if m.tie_word_embeddings else 2))
    head = float(m.vocab_size * h)
    active = attn + dense + shared + router + head + m.num_experts_per_tok * expert * n_moe
    return ParamCounts(attn, dense, routed, shared, router, emb, active, input_embedding=emb - head)


def kv_bytes_per_cached_token(s: Scenario) -> float:
    """KV bytes one GPU holds per token of its sequences, all blocks. With attention TP the group's tp·T
    sequences are shared: GQA splits the cache by KV head, MLA's latent is whole on every rank (tp times)."""
    return kv_bytes_all_blocks(s.model, s.workload.attention_tp)


def memory_per_gpu(s: Scenario, stages: int = 1) -> dict[str, float | bool | str]:
    """Bytes per GPU by kind, the GPU's capacity, and whether it fits (over_by_bytes when it does not).

    stages: pipeline stages (``workload.pipeline_stages``), ``s`` being one stage's scenario: each GPU holds
    1/stages of every per-block weight and of the KV cache (Megatron-LM's even split of the blocks); the
    embeddings and the output head sit on the first and the last stage, so a GPU holds the larger of the two."""
    m = s.model
    if not has_shape(m):
        return {"known": False, "note": "the model gives no attention shape (num_attention_heads, vocab_size, "
                                        "...): memory per GPU not computed"}
    p = param_counts(m)
    moe = MoEModel.from_spec(m)
    g = s.cluster.num_gpus
    # inside an attention TP group each GPU holds 1/moe_tp of the E/ep experts of its EP rank: E/attention_tp
    # experts' worth (ep = attention_tp / moe_tp)
    tp, grouped = s.workload.attention_tp, s.moe_in_tp_group
    slots_per_gpu = (m.n_routed_experts / tp if grouped else
                     (m.n_routed_experts + s.placement.redundant_experts) / g)
    experts = slots_per_gpu * moe.expert_weight_bytes * moe.num_moe_layers / stages
    # embeddings stay in BF16 (DeepSeek-V3 ships FP8 linear layers, BF16 embeddings and head); attention, dense
    # FFNs (and with tensor-parallel experts the shared ones) split over the attention TP group
    shared = p.shared_experts / (tp if grouped else 1)
    ends = p.embeddings if stages == 1 else max(p.input_embedding, p.embeddings - p.input_embedding)
    db = BYTES_PER_PARAM[m.dense_dtype]  # the FP4 formats keep these in BF16
    replicated = (p.attention / tp + p.dense_ffn / tp + shared + p.router) * db / stages + ends * ACT_BYTES
    t = s.workload.tokens_per_gpu
    seqs, ctx = s.workload.decode_share  # decoding sequences hold their KV cache (decode, mixed)
    kv = seqs * kv_cache_bytes(m, ctx, tp) / stages if seqs else 0.0
    top_k = s.top_k
    # dispatch in + combine out, worst case all remote (an attention TP group's tokens do not move)
    buffers = 2.0 * t * top_k * m.hidden_size * ACT_BYTES if not grouped else 0.0
    activations = 8.0 * t * max(m.hidden_size, m.moe_intermediate_size) * ACT_BYTES
    state = _training_state(s, slots_per_gpu * moe.expert_params * moe.num_moe_layers / stages,
                            (replicated - ends * ACT_BYTES) / db + ends, g / tp)
    total = experts + replicated + kv + buffers + activations + state
    cap = s.cluster.gpu.hbm_bytes
    return {"known": True, "expert_weights_bytes": experts, "other_weights_bytes": replicated, "kv_cache_bytes": kv,
            "dispatch_buffers_bytes": buffers, "activations_bytes": activations,
            **({"optimizer_state_bytes": state} if s.workload.mode == "training" else {}), "total_bytes": total,
            "capacity_bytes": cap, "fits": total <= cap, "over_by_bytes": max(0.0, total - cap),
            "model_params": p.total, "model_active_params": p.active}


GRAD_BYTES = 4  # fp32 gradients (Megatron-LM's main_grad buffers, bf16 params with fp32 grads)
ADAM_BYTES = 12  # fp32 master weights + Adam's two moments, sharded by the distributed optimizer


def _training_state(s: Scenario, expert_params: float, other_params: float, dense_replicas: float) -> float:
    """Bytes per GPU of gradients and Adam state in training (0 otherwise): every parameter the GPU holds has
    an fp32 gradient; the master weights and moments (12 bytes a parameter) are sharded over the GPUs that
    hold the same parameter: an expert's over ``workload.data_parallel`` replicas, the other weights over
    those replicas times the GPUs of the group that each hold them (``dense_replicas``). Megatron-LM's
    distributed optimizer: 6 + 12/d bytes a parameter for bf16 parameters with fp32 gradients, of which the
    weights' 2 are counted apart (docs/sources.md)."""
    if s.workload.mode != "training":
        return 0.0
    d = s.workload.data_parallel
    return (expert_params * (GRAD_BYTES + ADAM_BYTES / d)
            + other_params * (GRAD_BYTES + ADAM_BYTES / (d * max(1.0, dense_replicas))))
