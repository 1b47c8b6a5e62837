"""MoE model shape and the bytes and FLOPs it implies per token."""

from __future__ import annotations

from dataclasses import dataclass

from moesim.config.schema import ModelSpec

# bytes per weight, scales included: NVFP4 keeps one FP8 (E4M3) scale per 16 values (4 + 8/16 bits), MXFP4 one
# E8M0 scale per 32 (4 + 8/32 bits; OCP Microscaling spec v1.0); plain fp4 counts the 4 bits alone.
# GGUF (llama.cpp ggml-common.h block layouts): Q8_0 is 34 bytes per 32 weights (8.5 bits); Q4_K_M keeps gate
# and up in Q4_K (144 bytes per 256: 4.5 bits) and down in Q6_K (210 per 256: 6.5625 bits) on half the layers
# (llama.cpp's use_more_bits: the first and last eighth and every third layer between), Q4_K on the rest:
# (2 x 4.5 + (6.5625 + 4.5) / 2) / 3 = 4.84 bits a weight
BYTES_PER_PARAM = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5, "nvfp4": 0.5625, "mxfp4": 0.53125,
                   "q8_0": 8.5 / 8, "q4_k_m": (2 * 4.5 + (6.5625 + 4.5) / 2) / 3 / 8}
FP4_FAMILY = ("fp4", "nvfp4", "mxfp4")


@dataclass(frozen=True)
class MoEModel:
    """The routed-expert part of a model. Sizes in elements; bytes via ``weight_bytes_per_param``."""

    name: str
    hidden: int  # H
    inter: int  # F, one routed expert's FFN intermediate size
    experts: int  # E, routed experts per MoE layer
    shared_experts: int
    shared_inter: int  # total intermediate size of the shared expert(s), 0 if none
    moe_layer_ids: tuple[int, ...]  # indices (0-based) of the blocks that hold an MoE layer
    weight_dtype: str
    gated: bool = True  # SwiGLU experts (gate, up, down); False: up and down only (squared ReLU)
    latent: int | None = None  # latent MoE: the width tokens are dispatched and routed experts run in

    @classmethod
    def from_spec(cls, m: ModelSpec) -> MoEModel:
        """Derive which blocks are MoE: after ``first_k_dense_replace`` dense blocks, every ``moe_layer_freq``-th,
        except the blocks in ``mlp_only_layers``."""
        first, freq, dense = m.first_k_dense_replace, m.moe_layer_freq, set(m.mlp_only_layers)
        ids = tuple(i for i in range(first, m.num_hidden_layers) if (i - first + 1) % freq == 0 and i not in dense)
        if m.ffn_kinds:  # each block's FFN given (Nemotron-H)
            ids = tuple(i for i, k in enumerate(m.ffn_kinds) if k == "moe")
        shared = m.shared_expert_intermediate_size or m.n_shared_experts * m.moe_intermediate_size
        return cls(name=m.name, hidden=m.hidden_size, inter=m.moe_intermediate_size,
                   experts=m.n_routed_experts, shared_experts=m.n_shared_experts,
                   shared_inter=shared if m.n_shared_experts else 0, moe_layer_ids=ids,
                   weight_dtype=m.weight_dtype, gated=m.expert_gated, latent=m.expert_hidden_size)

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layer_ids)

    @property
    def weight_bytes_per_param(self) -> float:
        return BYTES_PER_PARAM[self.weight_dtype]

    @property
    def expert_hidden(self) -> int:
        """The width routed experts read and write (and dispatch moves): the latent one of a latent MoE."""
        return self.latent or self.hidden

    @property
    def up_mats(self) -> int:
        """Input projections of an expert: gate and up (SwiGLU), or up alone (squared ReLU)."""
        return 2 if self.gated else 1

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert: gate, up and down projections, 3·H·F (2·H·F ungated)."""
        return (self.up_mats + 1) * self.expert_hidden * self.inter

    @property
    def expert_weight_bytes(self) -> float:
        return self.expert_params * self.weight_bytes_per_param


def copy_bytes(hidden: int, dtype: str) -> int:
    """Bytes of one token's hidden state on the wire.

    FP8 carries one fp32 scale per 128 elements (DeepEP / DeepSeek-V3 fine-grained quantisation).
    """
    if dtype == "fp8":
        return hidden + 4 * -(-hidden // 128)
    return (4 if dtype == "fp32" else 2) * hidden
