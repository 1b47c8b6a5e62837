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

from collections import Counter
from collections.abc import Callable

import numpy as np

from moesim.config.schema import ModelSpec
from moesim.hw.costs.roofline import ACT_BYTES, ComputeCosts
from moesim.hw.flows import FlowSet
from moesim.model.layers import LAYER_KINDS, AttentionKind, default_kind, kinds_of, layer_specs
from moesim.model.moe import BYTES_PER_PARAM

GemmFn = Callable[[np.ndarray, int, int], np.ndarray]  # (rows m [G], n, k) -> seconds [G]


def attention_parts(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, decode: bool, context: int,
                    tp: int = 1, link_Bps: float = 0.0, latency_s: float = 0.0,
                    core_fn: Callable[[np.ndarray, bool, int], np.ndarray] | None = None,
                    gemm_fn: GemmFn | None = None, kind: AttentionKind | None = None, queries: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block's (projections, core, norms, TP all-reduce) per GPU [G] (seconds) for attention ``kind``
    (default: the model's, ``model.layers``): its projections, the attention core (scores and values over the
    tokens the kind attends to, reading the KV cache in decode), the block's two RMSNorms, and the analytic
    TP all-reduce when ``link_Bps`` is given.

    Tensor parallel over ``tp`` GPUs (Megatron-LM, Shoeybi et al. 2019): the group's tp·T tokens pass every
    GPU, each with 1/tp of the heads, so FLOPs per GPU stay those of T tokens but each GPU reads 1/tp of the
    weights; a ring all-reduce of the tp·T × H output follows over NVLink. MLA's latent cache is shared by
    all heads, so each TP rank reads all of it: decode KV traffic grows tp-fold (why DeepSeek serves MLA
    data-parallel); GQA's cache splits by KV head. ``gemm_fn`` (a silicon profile's measured GEMMs) times
    the projections one GEMM each when attention is data-parallel. ``queries``: decode query tokens per
    sequence (1 + MTP drafts in a verify pass): the T tokens are T / queries sequences, each reading its KV
    cache once for all its queries (FlashMLA and FlashInfer's multi-query decode).
    """
    kind = kind or LAYER_KINDS.get(default_kind(m))
    if not kind.mixes:  # an FFN-only block: its one norm, nothing else
        zero = np.zeros_like(tokens, dtype=float)
        return zero, zero, c.kernel(0.0, 2.0 * tokens * m.hidden_size * ACT_BYTES), zero
    wb = BYTES_PER_PARAM[m.dense_dtype]
    p = kind.params(m)
    h = m.hidden_size
    group = tokens * tp
    if gemm_fn is not None and tp == 1:
        proj = sum(gemm_fn(tokens, n, k) for n, k in kind.projections(m))
    else:
        proj = c.kernel(2.0 * tokens * p, p * wb / tp + group * h * ACT_BYTES * 4, peak=_dense_peak(m, c))
    # the kind's own core (a sliding window attends over at most its window, linear attention over its state)
    core_flops, cache_read, seen = kind.core_work(m, tokens, decode, context, tp, queries)
    core = c.kernel(core_flops, cache_read + group * h * ACT_BYTES * 2, peak=c.peak_bf16_flops)
    if core_fn is not None and tp == 1:  # a measured profile times the attention core itself
        core = core_fn(tokens, decode, seen)
    side_flops, side_bytes = kind.side_work(m, tokens, decode, context, tp, queries)
    if np.any(side_flops):  # DSA's indexer (FP8), beside the core a table times
        core = core + c.kernel(side_flops, side_bytes)
    norms = 2 * c.kernel(0.0, 2.0 * tokens * h * ACT_BYTES)
    reduce = 0.0
    if tp > 1 and link_Bps > 0:  # analytic ring; the engine instead moves tp_allreduce_flows when it can
        reduce = 2 * (tp - 1) / tp * group * h * ACT_BYTES / link_Bps + 2 * (tp - 1) * latency_s
    return proj, core, norms, reduce + np.zeros_like(norms)


def attention_time(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, decode: bool, context: int,
                   tp: int = 1, link_Bps: float = 0.0, latency_s: float = 0.0,
                   core_fn: Callable[[np.ndarray, bool, int], np.ndarray] | None = None,
                   kind: AttentionKind | None = None) -> np.ndarray:
    """One block's attention + norms per GPU [G] (seconds); see ``attention_parts``."""
    proj, core, norms, reduce = attention_parts(tokens, m, c, decode, context, tp, link_Bps, latency_s, core_fn,
                                                kind=kind)
    return proj + core + reduce + norms


def dense_ffn_time(tokens: np.ndarray, m: ModelSpec, c: ComputeCosts, gemm_fn: GemmFn | None = None,
                   tp: int = 1) -> np.ndarray:
    """One dense SwiGLU block per GPU [G] (seconds). Tensor parallel over ``tp`` GPUs (as attention is): each
    GPU runs 1/tp of the intermediate size over the group's tp·T tokens, the same FLOPs as T tokens on the
    whole FFN, reading 1/tp of the weights; an all-reduce of the output follows (Megatron-LM's MLP)."""
    h, i = m.hidden_size, m.intermediate_size or 0
    if gemm_fn is not None and tp == 1:  # gate+up fused (H -> 2I), down (I -> H), activation from the roofline
        return gemm_fn(tokens, 2 * i, h) + gemm_fn(tokens, h, i) + c.kernel(0.0, tokens * 3 * i * ACT_BYTES)
    wb, peak = BYTES_PER_PARAM[m.dense_dtype], _dense_peak(m, c)
    k = 3 if m.expert_gated else 2  # gate, up, down (SwiGLU), or up and down (squared ReLU)
    if tp == 1:
        return c.kernel(2.0 * tokens * k * h * i, k * h * i * wb + tokens * (h + k * i) * ACT_BYTES, peak=peak)
    return c.kernel(2.0 * tokens * k * h * i, k * h * i * wb / tp + (tp * tokens * h + k * tokens * i) * ACT_BYTES,
                    peak=peak)


def _dense_peak(m: ModelSpec, c: ComputeCosts) -> float | None:
    """The rate of the non-expert GEMMs: the experts' (None) when both share a format, else BF16's (the FP4
    formats keep attention and dense layers in BF16)."""
    return None if m.dense_dtype == m.weight_dtype else c.peak_bf16_flops


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
                  core_fn: Callable[[AttentionKind], Callable | None] | None = None,
                  ffn_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                  gemm_fns: tuple[GemmFn | None, GemmFn | None] = (None, None), queries: int = 1
                  ) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Per MoE layer, the named non-MoE compute run before it, each [G] seconds: ``attention_proj``,
    ``attention_core`` and ``norms`` of its own block and of any dense blocks since the previous MoE block,
    and those blocks' ``dense_ffn`` (an analytic TP all-reduce, when asked for, counts with the projections);
    and what runs after the last MoE layer: ``tail_blocks`` (trailing dense blocks) and the output ``head``.
    Blocks are read from the model's layer specs, each costed by its attention kind. Zero pieces are left
    out. ``core_fn(kind)``: a profile's attention core for that kind, or None (the roofline); ``gemm_fns``: a
    silicon profile's measured GEMMs (model dtype, BF16)."""
    gemm_fn, gemm_bf16 = gemm_fns
    parts = {}  # per attention kind: (projections + analytic all-reduce, core, norms) of one block
    for name in kinds_of(m):
        kind = LAYER_KINDS.get(name)
        k_core = core_fn(kind) if core_fn is not None else None
        proj, core, norms, reduce = attention_parts(tokens, m, c, decode, context, tp, link_Bps, latency_s, k_core,
                                                    gemm_fn, kind, queries)
        parts[name] = (proj + reduce, core, norms)
    if not m.intermediate_size:
        dense = np.zeros_like(tokens, dtype=float)
    elif ffn_fn is not None and tp == 1:  # a measured profile's SwiGLU piece costs a dense FFN of the same form
        dense = ffn_fn(tokens)
    else:  # tensor parallel with attention: its all-reduce (analytic when link_Bps is given) follows
        dense = dense_ffn_time(tokens, m, c, gemm_fn, tp) + (reduce if tp > 1 else 0.0)
    specs = layer_specs(m)
    before, prev = [], -1
    for b in moe_ids:
        gap = sum(sp.ffn == "dense" for sp in specs[prev + 1:b])  # dense FFN blocks in between
        proj, core, norms = _blocks(parts, specs[prev + 1:b + 1])
        before.append(_nonzero({"attention_proj": proj, "attention_core": core, "norms": norms,
                                "dense_ffn": dense * gap}))
        prev = b
    tail = None  # trailing blocks: each kind's mixer times its count, and their dense FFNs
    for name, n in _counts(specs[prev + 1:]).items():
        p, k_core, k_norms = parts[name]
        term = (p + k_core + k_norms) * n
        tail = term if tail is None else tail + term
    if tail is not None:
        tail = tail + dense * sum(sp.ffn == "dense" for sp in specs[prev + 1:])
    after = _nonzero({"tail_blocks": tail if tail is not None else np.zeros_like(tokens, dtype=float),
                      "head": head_time(tokens, m, c, decode, context, gemm_bf16)})
    return before, after


def mixed_non_moe_times(m: ModelSpec, moe_ids: tuple[int, ...], prefill: np.ndarray, decode: np.ndarray,
                        c: ComputeCosts, context: int, decode_context: int, **kw
                        ) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """``non_moe_times`` of a mixed batch [G]: ``prefill`` prompt tokens of sequences of ``context`` and
    ``decode`` tokens over ``decode_context`` each, per GPU. Projections, norms and dense FFNs run once over
    the summed tokens (weights read once); the attention core runs per group (a prefill kernel over the
    chunks, a decode kernel over the KV caches: FlashInfer/FlashAttention's split of a mixed batch, Vidur's
    per-operator composition); the head projects one token per prefill sequence plus every decode token.
    Trailing dense blocks after the last MoE layer are costed per group (their weights read twice)."""
    total = prefill + decode
    before, after = non_moe_times(m, moe_ids, total, c, False, context, **kw)
    groups = [non_moe_times(m, moe_ids, t, c, d, ctx, **kw) for t, d, ctx in
              ((prefill, False, context), (decode, True, decode_context)) if np.any(t)]
    for i, row in enumerate(before):
        core = sum(g[0][i].get("attention_core", 0.0) for g in groups)
        row.pop("attention_core", None)
        row.update(_nonzero({"attention_core": np.zeros_like(total) + core}))
    tail = sum(g[1].get("tail_blocks", 0.0) for g in groups)
    outputs = decode + prefill / max(1, context)  # one output per prefill sequence, one per decode token
    after = {k: v for k, v in after.items() if k not in ("tail_blocks", "head")}
    gemm_bf16 = kw.get("gemm_fns", (None, None))[1]
    after.update(_nonzero({"tail_blocks": np.zeros_like(total) + tail,
                           "head": head_time(outputs, m, c, True, decode_context, gemm_bf16)}))
    return before, after


def _blocks(parts: dict[str, tuple[np.ndarray, ...]], specs) -> tuple[np.ndarray, ...]:
    """(projections, core, norms) summed over the blocks ``specs``: each kind's one-block parts times its
    count (one product per kind, so blocks of one kind cost exactly n times one block)."""
    out = None
    for name, n in _counts(specs).items():
        term = tuple(x * n for x in parts[name])
        out = term if out is None else tuple(a + t for a, t in zip(out, term))
    return out


def _counts(specs) -> dict[str, int]:
    """Blocks per attention kind among ``specs``, in first-seen order."""
    return Counter(spec.attention for spec in specs)


def _nonzero(parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in parts.items() if np.any(v)}


def tp_allreduce_flows(gpus: int, gpus_per_node: int, tp: int, tokens: float, hidden: int,
                       blocks: int) -> FlowSet:
    """Ring all-reduce of the attention output in every TP group (tp consecutive GPUs: part of a node, or
    whole nodes, the ring then crossing their NICs), as the flows the engine moves: each GPU sends
    2(tp−1)/tp of the group's tp·T × H BF16 buffer to the next GPU of its ring, once per attention block
    folded into this layer (``blocks``)."""
    src = np.arange(gpus)
    dst = (src // tp) * tp + (src % tp + 1) % tp
    nbytes = 2 * (tp - 1) / tp * tp * tokens * hidden * ACT_BYTES * blocks
    return FlowSet.point_to_point(src, dst, np.full(gpus, nbytes))
