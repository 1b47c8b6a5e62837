"""The ``model:`` section of a scenario: the MoE shape, the attention and mixer shapes per block kind, the
weight and cache formats (Hugging Face key names where they have one)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from moesim.config.types import RegistryName, Strict


class ModelSpec(Strict):
    """An MoE model's shape, keyed by Hugging Face / DeepSeek config names."""

    name: str = "inline"
    source: str = "user-supplied"
    hidden_size: int = Field(gt=0, le=2**20)
    moe_intermediate_size: int = Field(gt=0, le=2**22)
    n_routed_experts: int = Field(gt=0, le=2**16)
    num_experts_per_tok: int = Field(gt=0, le=1024)
    n_shared_experts: int = Field(default=0, ge=0, le=1024)
    shared_expert_intermediate_size: int | None = Field(default=None, gt=0)
    num_hidden_layers: int = Field(gt=0, le=10_000)
    first_k_dense_replace: int = Field(default=0, ge=0)
    moe_layer_freq: int = Field(default=1, ge=1, le=10_000)
    mlp_only_layers: tuple[int, ...] = ()  # blocks kept dense where the rule above puts an MoE (Qwen, GLM)
    n_group: int = Field(default=1, ge=1)
    topk_group: int | None = Field(default=None, ge=1)
    group_score: Literal["max", "sum_top2"] = "max"
    scoring_func: Literal["softmax", "sigmoid"] = "softmax"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = Field(default=1.0, gt=0)
    # nvfp4 / mxfp4: 4-bit weights with their block scales (moesim.model.moe.BYTES_PER_PARAM); fp4: the bits alone;
    # q8_0 / q4_k_m: llama.cpp's GGUF quantisations (8.5 and 4.84 bits a weight; GPU GEMMs at the BF16 peak)
    weight_dtype: Literal["bf16", "fp8", "fp4", "nvfp4", "mxfp4", "q8_0", "q4_k_m"] = "bf16"
    kv_cache_dtype: Literal["bf16", "fp8"] = "bf16"  # the KV cache's element (engines' --kv-cache-dtype fp8)
    # attention, dense FFN, shared-expert and router weights; default: weight_dtype, but BF16 under nvfp4 and
    # mxfp4, whose checkpoints quantise the routed experts only (gpt-oss modules_to_not_convert, ModelOpt NVFP4
    # exclude_modules); plain fp4 stands for a whole-model 4-bit quantisation (GGUF Q4) and covers them too
    dense_weight_dtype: Literal["bf16", "fp8", "fp4", "nvfp4", "mxfp4", "q8_0", "q4_k_m"] | None = None
    # the non-MoE shape (optional: memory per GPU needs it). Attention is MLA when kv_lora_rank is set
    # (DeepSeek-V2/V3), else MHA/GQA from the head counts.
    # the longest context the checkpoint supports (config.json's max_position_embeddings; None: not known)
    max_position_embeddings: int | None = Field(default=None, gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    q_lora_rank: int | None = Field(default=None, ge=0)  # 0 or null: no query LoRA (DeepSeek's native configs write 0)
    kv_lora_rank: int | None = Field(default=None, gt=0)
    qk_nope_head_dim: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int | None = Field(default=None, ge=0)
    v_head_dim: int | None = Field(default=None, gt=0)
    index_n_heads: int | None = Field(default=None, gt=0)  # DeepSeek sparse attention's indexer (V3.2, GLM-5)
    index_head_dim: int | None = Field(default=None, gt=0)
    index_topk: int | None = Field(default=None, gt=0)  # tokens each query of a ``dsa`` block attends over
    # linear-attention blocks (``linear``: Gated DeltaNet, Qwen3-Next / Qwen3.5), Hugging Face's names
    linear_num_key_heads: int | None = Field(default=None, gt=0)
    linear_num_value_heads: int | None = Field(default=None, gt=0)
    linear_key_head_dim: int | None = Field(default=None, gt=0)
    linear_value_head_dim: int | None = Field(default=None, gt=0)
    linear_conv_kernel_dim: int = Field(default=4, gt=0)
    # sliding-window blocks with their own head shape (MiMo-V2-Flash's swa_*); unset: the model's
    sliding_num_attention_heads: int | None = Field(default=None, gt=0)
    sliding_num_key_value_heads: int | None = Field(default=None, gt=0)
    sliding_head_dim: int | None = Field(default=None, gt=0)
    sliding_v_head_dim: int | None = Field(default=None, gt=0)
    # full-attention blocks with their own head shape among sliding ones (Gemma 4's global layers), and keys
    # that are the values there (attention_k_eq_v: one projection, one cached tensor)
    global_head_dim: int | None = Field(default=None, gt=0)
    num_global_key_value_heads: int | None = Field(default=None, gt=0)
    attention_k_eq_v: bool = False
    # DeepSeek-V4's compressed attention (csa / hca blocks): KV entries pooled ``csa_ratio`` / ``hca_ratio``
    # tokens to one, beside a ``sliding_window`` of raw ones; the output projection in ``o_groups`` LoRA groups
    csa_ratio: int = Field(default=4, gt=0)
    hca_ratio: int = Field(default=128, gt=0)
    o_lora_rank: int | None = Field(default=None, gt=0)
    o_groups: int = Field(default=1, gt=0)
    # latent MoE (Kimi-K3's routed_expert_hidden_size): tokens are projected to this width before dispatch and
    # the routed experts run in it; None: the hidden size
    expert_hidden_size: int | None = Field(default=None, gt=0)
    # linear blocks with a channel-wise, full-rank forget gate (Kimi Delta Attention) beside the head gates
    linear_channel_gate: bool = False
    mla_output_gate: bool = False  # MLA blocks gate their output (Kimi-K3's mla_use_output_gate)
    attn_output_gate: bool = False  # full-attention blocks gate their output (Qwen3-Next, Qwen3.5): q_proj x 2
    # per block, its FFN: moe, dense or none (Nemotron-H's mixer-only blocks); empty: the MoE rule above
    ffn_kinds: tuple[Literal["moe", "dense", "none"], ...] = ()
    # gated (SwiGLU: gate, up, down) or plain (up, down: Nemotron-H's squared-ReLU) experts and dense FFNs
    expert_gated: bool = True
    # Mamba-2 blocks (``mamba``; Hugging Face's NemotronH names, mamba_ prefixed where theirs are bare)
    mamba_num_heads: int | None = Field(default=None, gt=0)
    mamba_head_dim: int | None = Field(default=None, gt=0)
    ssm_state_size: int | None = Field(default=None, gt=0)
    mamba_n_groups: int = Field(default=1, gt=0)
    mamba_conv_kernel: int = Field(default=4, gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)  # dense FFN blocks
    # per block, its attention kind (names in moesim.model.layers.LAYER_KINDS: mha, gqa, mla, sliding, ...; or
    # full: the model's full-attention kind); empty: every block of that kind (mla when kv_lora_rank is set,
    # else gqa or mha). Hugging Face's layer_types (full_attention / sliding_attention) import as full / sliding
    attention_kinds: tuple[RegistryName, ...] = ()
    sliding_window: int | None = Field(default=None, gt=0)  # tokens a ``sliding`` block attends over
    vocab_size: int | None = Field(default=None, gt=0, le=2**24)
    tie_word_embeddings: bool = False

    @property
    def dense_dtype(self) -> str:
        """The non-expert weights' format (``dense_weight_dtype``, or its default)."""
        if self.dense_weight_dtype is not None:
            return self.dense_weight_dtype
        return "bf16" if self.weight_dtype in ("nvfp4", "mxfp4") else self.weight_dtype

    @property
    def has_attention_shape(self) -> bool:
        """Whether the spec carries what whole-model scope needs: attention heads and vocabulary."""
        return self.num_attention_heads is not None and self.vocab_size is not None
