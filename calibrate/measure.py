"""Measure every MoE layer piece over a grid and return profile points (no fitting here).

Each point is a dict: the piece's query variables (see moesim.profile.PIECES) plus the timing summary
(median_s, p20_s, p80_s, n, method, retries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from calibrate import pieces as P
from calibrate.timing import measure

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class Bench:
    """Where and how to time: device, threads, minimum run time per point; a progress callback."""

    def __init__(self, device: str = "cpu", threads: int = 1, min_run_s: float = 0.05,
                 progress: Callable[[str], None] | None = None) -> None:
        self.device, self.threads, self.min_run_s = device, threads, min_run_s
        self.progress = progress or (lambda _msg: None)

    def time(self, fn: Callable[[], Any]) -> dict[str, Any]:
        with torch.inference_mode():
            return measure(fn, self.device, self.threads, self.min_run_s)

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def skewed_counts(copies: int, experts: int, skew: float, seed: int) -> list[int]:
    """Tokens per expert: a multinomial draw of ``copies`` over Zipf(skew) weights (skew 0 = uniform)."""
    rng = np.random.default_rng(seed)
    w = np.arange(1, experts + 1, dtype=float) ** -skew
    return rng.multinomial(copies, rng.permutation(w / w.sum())).tolist()


COLD_BYTES = 96 << 20  # more than any last-level cache here: weights cycled through this are read cold


def expert_points(b: Bench, grid: dict[str, Any]) -> list[dict[str, Any]]:
    """One expert's SwiGLU for n tokens, per shape and dtype (the loop method's unit of work).

    In a layer every expert's weights are read once, cold; timing one expert again and again would keep
    its weights in cache. So each call takes the next of enough weight copies to exceed the cache."""
    out = []
    for dname in grid["dtypes"]:
        lim = grid.get("limits", {}).get(dname, {})
        for h, i in lim.get("shapes", grid["expert_shapes"]):
            per_expert = 3 * h * i * torch.finfo(DTYPES[dname]).bits // 8
            copies = 1 if b.device == "cuda" else int(min(64, max(1, COLD_BYTES // per_expert)))
            w1, w3, w2 = P.expert_weights(copies, h, i, DTYPES[dname], b.device)
            for n in lim.get("tokens", grid["expert_tokens"]):
                xs = torch.randn(n, h, device=b.device).to(DTYPES[dname])
                t = b.time(_cycling(xs, n, w1, w3, w2, copies))
                out.append({"tokens": n, "hidden": h, "inter": i, "dtype": dname, **t})
            b.progress(f"expert {dname} {h}x{i}")
    return out


def _cycling(xs, n, w1, w3, w2, copies):
    state = {"i": 0}

    def call():
        j = state["i"] = (state["i"] + 1) % copies
        return P.experts_loop(xs, [n], w1[j:j + 1], w3[j:j + 1], w2[j:j + 1])
    return call


def vector_points(b: Bench, grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Whole grouped expert calls on per-expert token vectors (uniform, skewed, with empty experts), for
    every available method: gives the per-call overhead and which method is fastest."""
    out = []
    dname = grid["dtypes"][0]
    h, i = grid["expert_shapes"][0]
    v = grid["vector"]
    for el in v["local_experts"]:
        w = P.expert_weights(el, h, i, DTYPES[dname], b.device)
        for copies in v["copies"]:
            for skew in v["skews"]:
                counts = skewed_counts(copies, el, skew, seed=el * 1000 + copies)
                xs = torch.randn(copies, h, device=b.device).to(DTYPES[dname])
                for method, fn in P.EXPERT_METHODS.items():
                    try:
                        t = b.time(lambda fn=fn, xs=xs, counts=counts, w=w: fn(xs, counts, *w))
                    except (RuntimeError, NotImplementedError) as exc:  # e.g. grouped_mm unsupported
                        out.append({"counts": counts, "hidden": h, "inter": i, "dtype": dname, "method_name": method,
                                    "error": str(exc).splitlines()[0]})
                        continue
                    out.append({"counts": counts, "hidden": h, "inter": i, "dtype": dname, "method_name": method,
                                "skew": skew, **t})
        b.progress(f"expert vectors El={el}")
    return out


def router_points(b: Bench, grid: dict[str, Any], top_k: int = 4) -> list[dict[str, Any]]:
    out = []
    dname = grid["dtypes"][0]
    for h, e in grid["router"]["shapes"]:
        w = torch.randn(e, h, device=b.device).to(DTYPES[dname])
        for t in grid["router"]["tokens"]:
            x = torch.randn(t, h, device=b.device).to(DTYPES[dname])
            out.append({"tokens": t, "hidden": h, "experts": e, "dtype": dname, "top_k": top_k,
                        **b.time(lambda x=x, w=w, e=e: P.router(x, w, min(top_k, e)))})
        b.progress(f"router {h}x{e}")
    return out


def permute_points(b: Bench, grid: dict[str, Any], top_k: int = 4, experts: int = 64):
    """Permute and unpermute points: copies C = T·k rows of H."""
    perm, unperm = [], []
    dname = grid["dtypes"][0]
    g = torch.Generator().manual_seed(0)
    for h in grid["permute"]["hidden"]:
        for c in grid["permute"]["copies"]:
            t = max(1, c // top_k)
            x = torch.randn(t, h, device=b.device).to(DTYPES[dname])
            ids = torch.stack([torch.randperm(experts, generator=g)[:top_k] for _ in range(t)]).to(b.device)
            weights = torch.rand(t, top_k, device=b.device)
            perm.append({"copies": t * top_k, "hidden": h, "tokens": t, "dtype": dname,
                         **b.time(lambda x=x, ids=ids: P.permute(x, ids, experts))})
            xs, order, _ = P.permute(x, ids, experts)
            unperm.append({"copies": t * top_k, "hidden": h, "tokens": t, "dtype": dname,
                           **b.time(lambda xs=xs, order=order, weights=weights, t=t:
                                    P.unpermute(xs, order, weights, t))})
        b.progress(f"permute H={h}")
    return perm, unperm


def attention_points(b: Bench, grid: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Attention core points: causal prefill over batch x seq tokens, and decode over KV caches."""
    a = grid["attention"]
    dname = grid["dtypes"][0]
    dt = DTYPES[dname]
    prefill, decode = [], []
    for heads, d, kv in a["shapes"]:
        for seq in a["prefill_seq"]:
            for batch in a["prefill_batch"]:
                q, k, v = (torch.randn(batch, heads, seq, d, device=b.device).to(dt) for _ in range(3))
                prefill.append({"tokens": batch * seq, "seq": seq, "heads": heads, "head_dim": d, "dtype": dname,
                                **b.time(lambda q=q, k=k, v=v: P.attention_prefill(q, k, v))})
        for batch in a["decode_batch"]:
            for ctx in a["decode_context"]:
                q = torch.randn(batch, heads, 1, d, device=b.device).to(dt)
                k, v = (torch.randn(batch, kv, ctx, d, device=b.device).to(dt) for _ in range(2))
                decode.append({"context": ctx, "batch": batch, "heads": heads, "kv_heads": kv, "head_dim": d,
                               "dtype": dname, **b.time(lambda q=q, k=k, v=v: P.attention_decode(q, k, v))})
        b.progress(f"attention {heads}x{d} kv {kv}")
    return prefill, decode
