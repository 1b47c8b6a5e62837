"""The pieces of a token-choice MoE layer, written plainly in PyTorch (shapes in the docstrings).

Tokens T, hidden H, experts E (local experts El), top-k k, FFN width I. Copies C = T·k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def router(x: torch.Tensor, w: torch.Tensor, k: int, scoring: str = "softmax",
           bias: torch.Tensor | None = None, n_group: int = 1, topk_group: int = 1):
    """x [T, H], w [E, H] -> (weights [T, k], ids [T, k] int64). ``bias`` [E] affects selection only
    (auxiliary-loss-free balancing); ``n_group``/``topk_group`` apply DeepSeek's group limit (sum of top-2)."""
    logits = x @ w.t()
    scores = torch.sigmoid(logits) if scoring == "sigmoid" else torch.softmax(logits, dim=-1)
    sel = scores if bias is None else scores + bias
    if topk_group < n_group:
        t, e = sel.shape
        g = sel.view(t, n_group, e // n_group)
        gscore = g.topk(2, dim=-1).values.sum(-1)
        keep = gscore.topk(topk_group, dim=-1).indices
        mask = torch.zeros(t, n_group, dtype=torch.bool, device=x.device).scatter_(1, keep, True)
        sel = sel.masked_fill(~mask.repeat_interleave(e // n_group, dim=1), float("-inf"))
    ids = sel.topk(k, dim=-1).indices
    weights = scores.gather(1, ids)
    return weights / weights.sum(-1, keepdim=True), ids


def permute(x: torch.Tensor, ids: torch.Tensor, experts: int):
    """Group token copies by expert. x [T, H], ids [T, k] -> (xs [C, H], order [C], counts [E])."""
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    xs = x.index_select(0, order // ids.shape[1])
    counts = torch.bincount(flat, minlength=experts)
    return xs, order, counts


def expert_weights(experts: int, hidden: int, inter: int, dtype: torch.dtype, device: str = "cpu",
                   seed: int = 0):
    """SwiGLU weights: w1, w3 [El, H, I] (gate, up) and w2 [El, I, H] (down)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    scale = hidden ** -0.5
    w1 = (torch.randn(experts, hidden, inter, generator=g) * scale).to(device=device, dtype=dtype)
    w3 = (torch.randn(experts, hidden, inter, generator=g) * scale).to(device=device, dtype=dtype)
    w2 = (torch.randn(experts, inter, hidden, generator=g) * inter ** -0.5).to(device=device, dtype=dtype)
    return w1, w3, w2


def experts_loop(xs: torch.Tensor, counts: list[int], w1, w3, w2, mm=torch.matmul) -> torch.Tensor:
    """One SwiGLU per expert with tokens (experts with 0 tokens are skipped). xs [C, H] grouped by expert.
    ``mm(x, w)``: the GEMM (``experts_loop_fp8`` passes the FP8 one)."""
    out = torch.empty_like(xs)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        x = xs[start:start + n]
        out[start:start + n] = mm(F.silu(mm(x, w1[e])) * mm(x, w3[e]), w2[e])
        start += n
    return out


def expert_weights_fp8(experts: int, hidden: int, inter: int, device: str = "cpu", seed: int = 0):
    """FP8 (e4m3) SwiGLU weights laid out for ``torch._scaled_mm`` (its second operand column-major):
    w1, w3 [El, I, H] and w2 [El, H, I], transposed at use. Per-tensor scales of 1."""
    w1, w3, w2 = expert_weights(experts, hidden, inter, torch.bfloat16, device, seed)
    f8 = torch.float8_e4m3fn
    return (w1.transpose(1, 2).contiguous().to(f8), w3.transpose(1, 2).contiguous().to(f8),
            w2.transpose(1, 2).contiguous().to(f8))


def _mm_fp8(x: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """x [n, K] (BF16, quantised here, per-tensor scale 1) @ w_t.T (w_t [N, K] FP8) -> [n, N] BF16."""
    one = torch.ones((), device=x.device, dtype=torch.float32)
    return torch._scaled_mm(x.to(torch.float8_e4m3fn), w_t.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def experts_loop_fp8(xs: torch.Tensor, counts: list[int], w1, w3, w2) -> torch.Tensor:
    """``experts_loop`` with FP8 weights and activations (DeepSeek-V3-style W8A8 expert GEMMs)."""
    return experts_loop(xs, counts, w1, w3, w2, mm=_mm_fp8)


def experts_bmm(xs: torch.Tensor, counts: list[int], w1, w3, w2) -> torch.Tensor:
    """Pad every expert's rows to the largest count and run three batched GEMMs."""
    el, h = len(counts), xs.shape[1]
    m = max(max(counts), 1)
    pad = xs.new_zeros(el, m, h)
    start = 0
    for e, n in enumerate(counts):
        pad[e, :n] = xs[start:start + n]
        start += n
    y = torch.bmm(F.silu(torch.bmm(pad, w1)) * torch.bmm(pad, w3), w2)
    return torch.cat([y[e, :n] for e, n in enumerate(counts)]) if xs.shape[0] else xs.clone()


def experts_grouped(xs: torch.Tensor, counts: list[int], w1, w3, w2) -> torch.Tensor:
    """``torch._grouped_mm`` over the experts' row blocks (offsets = cumulative counts)."""
    offs = torch.tensor(counts, device=xs.device).cumsum(0).to(torch.int32)
    return torch._grouped_mm(F.silu(torch._grouped_mm(xs, w1, offs=offs))
                             * torch._grouped_mm(xs, w3, offs=offs), w2, offs=offs)


EXPERT_METHODS = {"loop": experts_loop, "bmm": experts_bmm, "grouped_mm": experts_grouped}


def unpermute(ys: torch.Tensor, order: torch.Tensor, weights: torch.Tensor, tokens: int) -> torch.Tensor:
    """Weighted sum of each token's k expert outputs. ys [C, H] grouped by expert -> [T, H]."""
    k = weights.shape[1]
    w = weights.reshape(-1).index_select(0, order).unsqueeze(1).to(ys.dtype)
    out = ys.new_zeros(tokens, ys.shape[1])
    return out.index_add_(0, order // k, ys * w)


def moe_layer(x, w_router, k, experts_w, method="loop", scoring="softmax", bias=None):
    """The whole single-process MoE layer: router → permute → experts → unpermute. x [T, H] -> [T, H]."""
    weights, ids = router(x, w_router, k, scoring, bias)
    xs, order, counts = permute(x, ids, w_router.shape[0])
    ys = EXPERT_METHODS[method](xs, counts.tolist(), *experts_w)
    return unpermute(ys, order, weights, x.shape[0])


def attention_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention over whole prompts. q, k, v [B, heads, L, d] -> [B, heads, L, d]."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def attention_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One new token per sequence against its KV cache. q [B, heads, 1, d], k, v [B, kv_heads, L, d]."""
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=k.shape[1] != q.shape[1])
