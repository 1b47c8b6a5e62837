"""The non-MoE parts of every block (attention, norms, dense FFN) and the output head, as compute time on
one GPU from the roofline (``costs.ComputeCosts``). Data-parallel attention: every GPU runs its own tokens.

Per block and GPU with T tokens (prefill: sequences of ``context_tokens``; decode: T sequences, one new
token each, attending over ``context_tokens``):
- projections: 2·T·P_attn FLOPs (P_attn from moesim.model.memory), weights read once;
- attention core: prefill causal 2·heads·(d_qk + d_v)·L/2 FLOPs per token (MLA in its naive form,
  d_qk = nope + rope); decode 2·heads·(d_qk + d_v)·L per token reading the KV cache (L·kv bytes), with MLA's
  absorbed form (d_qk = kv_lora + rope, d_v = kv_lora; FlashMLA) that decode kernels use;
- two RMSNorms (read and write T·H);
- dense FFN blocks: 3 GEMMs, 2·T·3·H·I FLOPs;
- output head once per iteration: 2·T_out·H·V, T_out = T (decode) or one token per sequence (prefill).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from moesim.config.schema import ModelSpec
from moesim.hw.costs.roofline import ACT_BYTES, ComputeCosts
from moesim.hw.flows import FlowSet
from moesim.model.memory import attention_params, kv_bytes_per_token
from moesim.model.moe import BYTES_PER_PARAM


def _core_dims(m: ModelSpec, decode: bool) -> tuple[int, int]:
    if m.kv_lora_rank:
        rope = m.qk_rope_head_dim or 0
        if decode:
            return m.kv_lora_rank + rope, m.kv_lora_rank
        return (m.qk_nope_head_dim or 128) + rope, m.v_head_dim or 128
    hd = m.head_dim or m.hidden_size // m.num_attention_heads
    return hd, hd


GemmFn = Callable[[np.ndarray, int, int], np.ndarray]  # (rows m [G], n, k) -> seconds [G]


def attention_parts(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, decode: bool, context: int,
                    tp: int = 1, link_Bps: float = 0.0, latency_s: float = 0.0,
                    core_fn: Callable[[np.ndarray, bool, int], np.ndarray] | None = None,
                    gemm_fn: GemmFn | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block's (projections, core, norms, TP all-reduce) per GPU [G] (seconds): the Q/K/V/O (or MLA
    down/up) projections, the attention core (MHA/GQA/MLA: scores and values over the context, reading the
    KV cache in decode), the block's two RMSNorms, and the analytic TP all-reduce when ``link_Bps`` is given.

    Tensor parallel over ``tp`` GPUs (Megatron-LM, Shoeybi et al. 2019): the group's tp·T tokens pass every
    GPU, each with 1/tp of the heads, so FLOPs per GPU stay those of T tokens but each GPU reads 1/tp of the
    weights; a ring all-reduce of the tp·T × H output follows over NVLink. MLA's latent cache is shared by
    all heads, so each TP rank reads all of it: decode KV traffic grows tp-fold (why DeepSeek serves MLA
    data-parallel); GQA's cache splits by KV head. ``gemm_fn`` (a silicon profile's measured GEMMs) times
    the projections one GEMM each when attention is data-parallel.
    """
    wb = BYTES_PER_PARAM[m.weight_dtype]
    p = attention_params(m)
    h = m.hidden_size
    group = tokens * tp
    if gemm_fn is not None and tp == 1:
        from moesim.hw.costs.silicon_gemm import projection_gemms  # noqa: PLC0415

        proj = sum(gemm_fn(tokens, n, k) for n, k in projection_gemms(m))
    else:
        proj = c.kernel(2.0 * tokens * p, p * wb / tp + group * h * ACT_BYTES * 4)
    dqk, dv = _core_dims(m, decode)
    span = context if decode else context / 2.0
    core_flops = 2.0 * tokens * m.num_attention_heads * (dqk + dv) * span
    kv_share = 1.0 if m.kv_lora_rank else 1.0 / tp
    kv_read = (group * context * kv_bytes_per_token(m) * kv_share if decode
               else group * kv_bytes_per_token(m) * 2 * kv_share)
    core = c.kernel(core_flops, kv_read + group * h * ACT_BYTES * 2, peak=c.peak_bf16_flops)
    if core_fn is not None and tp == 1:  # a measured profile times the attention core itself
        core = core_fn(tokens, decode, context)
    norms = 2 * c.kernel(0.0, 2.0 * tokens * h * ACT_BYTES)
    reduce = 0.0
    if tp > 1 and link_Bps > 0:  # analytic ring; the engine instead moves tp_allreduce_flows when it can
        reduce = 2 * (tp - 1) / tp * group * h * ACT_BYTES / link_Bps + 2 * (tp - 1) * latency_s
    return proj, core, norms, reduce + np.zeros_like(norms)


def attention_time(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, decode: bool, context: int,
                   tp: int = 1, link_Bps: float = 0.0, latency_s: float = 0.0,
                   core_fn: Callable[[np.ndarray, bool, int], np.ndarray] | None = None) -> np.ndarray:
    """One block's attention + norms per GPU [G] (seconds); see ``attention_parts``."""
    proj, core, norms, reduce = attention_parts(tokens, m, c, decode, context, tp, link_Bps, latency_s, core_fn)
    return proj + core + reduce + norms


def dense_ffn_time(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, gemm_fn: GemmFn | None = None) -> np.ndarray:
    h, i = m.hidden_size, m.intermediate_size or 0
    if gemm_fn is not None:  # gate+up fused (H -> 2I), down (I -> H), and the activation from the roofline
        return gemm_fn(tokens, 2 * i, h) + gemm_fn(tokens, h, i) + c.kernel(0.0, tokens * 3 * i * ACT_BYTES)
    wb = BYTES_PER_PARAM[m.weight_dtype]
    return c.kernel(2.0 * tokens * 3 * h * i, 3.0 * h * i * wb + tokens * (h + 3 * i) * ACT_BYTES)


def head_time(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, decode: bool, context: int,
              gemm_fn: GemmFn | None = None) -> np.ndarray:
    """The output head (BF16): ``gemm_fn`` is the BF16 GEMM of a silicon profile when there is one."""
    out = tokens if decode else np.maximum(tokens / context, 1.0)
    h, v = m.hidden_size, m.vocab_size
    if gemm_fn is not None:
        return gemm_fn(out, v, h)
    return c.kernel(2.0 * out * h * v, h * v * ACT_BYTES + out * v * 4, peak=c.peak_bf16_flops)


def non_moe_times(m: ModelSpec, moe_ids: tuple[int, ...], tokens: np.ndarray, c: ComputeCosts, decode: bool,
                  context: int, tp: int = 1, link_Bps: float = 0.0, latency_s: float = 0.0,
                  core_fn: Callable[[np.ndarray, bool, int], np.ndarray] | None = None,
                  ffn_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                  gemm_fns: tuple[GemmFn | None, GemmFn | None] = (None, None)
                  ) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Per MoE layer, the named non-MoE compute run before it, each [G] seconds: ``attention_proj``,
    ``attention_core`` and ``norms`` of its own block and of any dense blocks since the previous MoE block,
    and those blocks' ``dense_ffn`` (an analytic TP all-reduce, when asked for, counts with the projections);
    and what runs after the last MoE layer: ``tail_blocks`` (trailing dense blocks) and the output ``head``.
    Zero pieces are left out. ``gemm_fns``: a silicon profile's measured GEMMs (model dtype, BF16)."""
    gemm_fn, gemm_bf16 = gemm_fns
    proj, core, norms, reduce = attention_parts(tokens, m, c, decode, context, tp, link_Bps, latency_s, core_fn,
                                                gemm_fn)
    proj = proj + reduce
    if not m.intermediate_size:
        dense = np.zeros_like(tokens, dtype=float)
    else:  # a measured profile's SwiGLU piece (the expert FFN) costs a dense FFN of the same form
        dense = ffn_fn(tokens) if ffn_fn is not None else dense_ffn_time(tokens, m, c, gemm_fn)
    before, prev = [], -1
    for b in moe_ids:
        gap = b - prev - 1  # dense blocks in between: attention + dense FFN each
        n = gap + 1
        before.append(_nonzero({"attention_proj": proj * n, "attention_core": core * n, "norms": norms * n,
                                "dense_ffn": dense * gap}))
        prev = b
    trailing = m.num_hidden_layers - 1 - prev
    after = _nonzero({"tail_blocks": (proj + core + norms + dense) * trailing,
                      "head": head_time(tokens, m, c, decode, context, gemm_bf16)})
    return before, after


def _nonzero(parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in parts.items() if np.any(v)}


def tp_allreduce_flows(gpus: int, gpus_per_node: int, tp: int, tokens: float, hidden: int,
                       blocks: int) -> FlowSet:
    """Ring all-reduce of the attention output in every TP group (tp consecutive GPUs of a node), as the
    flows the engine moves: each GPU sends 2(tp−1)/tp of the group's tp·T × H BF16 buffer to the next GPU
    of its ring, once per attention block folded into this layer (``blocks``)."""
    src = np.arange(gpus)
    dst = (src // tp) * tp + (src % tp + 1) % tp
    nbytes = 2 * (tp - 1) / tp * tp * tokens * hidden * ACT_BYTES * blocks
    return FlowSet.point_to_point(src, dst, np.full(gpus, nbytes))
