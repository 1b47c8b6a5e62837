"""Measure every MoE layer piece over a grid and return profile points (no fitting here).

Each point is a dict: the piece's query variables (see moesim.hw.costs.measured.PIECES) plus the timing summary
(median_s, p20_s, p80_s, n, method, retries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from moesim.calibrate import pieces as P
from moesim.calibrate.timing import measure

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn}


class Bench:
    """Where and how to time: the code path (``kind``: cpu or cuda), threads, minimum run time per point,
    repetitions (CUDA path), a progress callback. ``dry_run``: the CUDA path with tensors on the host.
    ``device`` is where tensors live."""

    def __init__(self, device: str = "cpu", threads: int = 1, min_run_s: float = 0.05,
                 progress: Callable[[str], None] | None = None, dry_run: bool = False, reps: int = 30) -> None:
        self.kind, self.dry_run = device, dry_run and device == "cuda"
        self.device = "cpu" if self.dry_run else device
        self.threads, self.min_run_s, self.reps = threads, min_run_s, reps
        self.progress = progress or (lambda _msg: None)

    def time(self, fn: Callable[[], Any]) -> dict[str, Any]:
        with torch.inference_mode():
            return measure(fn, self.kind, self.threads, self.min_run_s, reps=self.reps, dry=self.dry_run)

    def sync(self) -> None:
        if self.kind == "cuda" and not self.dry_run:
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
    for dname in grid["dtypes"] + grid.get("fp8_dtypes", []):
        lim = grid.get("limits", {}).get(dname, {})
        for h, i in lim.get("shapes", grid["expert_shapes"]):
            per_expert = 3 * h * i * torch.finfo(DTYPES[dname]).bits // 8
            # on a GPU the L2 flush before every repetition makes the weights cold; on a CPU cycle copies
            copies = 1 if b.kind == "cuda" else int(min(64, max(1, COLD_BYTES // per_expert)))
            fp8 = dname.startswith("float8")
            try:
                w = P.expert_weights_fp8(copies, h, i, b.device) if fp8 else \
                    P.expert_weights(copies, h, i, DTYPES[dname], b.device)
                for n in lim.get("tokens", grid["expert_tokens"]):
                    xs = torch.randn(n, h, device=b.device).to(torch.bfloat16 if fp8 else DTYPES[dname])
                    t = b.time(_cycling(xs, n, *w, copies, fp8))
                    out.append({"tokens": n, "hidden": h, "inter": i, "dtype": dname, **t})
            except (RuntimeError, NotImplementedError, TypeError) as exc:
                if not fp8:
                    raise  # only the FP8 GEMM may be missing (it needs an FP8-capable GPU and torch build)
                out.append({"hidden": h, "inter": i, "dtype": dname, "error": str(exc).splitlines()[0][:200]})
                b.progress(f"expert {dname} {h}x{i}: unavailable ({str(exc).splitlines()[0][:80]})")
                break
            b.progress(f"expert {dname} {h}x{i}")
    return out


def _cycling(xs, n, w1, w3, w2, copies, fp8=False):
    state = {"i": 0}
    loop = P.experts_loop_fp8 if fp8 else P.experts_loop

    def call():
        j = state["i"] = (state["i"] + 1) % copies
        return loop(xs, [n], w1[j:j + 1], w3[j:j + 1], w2[j:j + 1])
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
    decode += mla_decode_points(b, a.get("mla", []), a["decode_batch"], a["decode_context"], dname)
    return prefill, decode


def mla_decode_points(b: Bench, shapes, batches, contexts, dname: str) -> list[dict[str, Any]]:
    """MLA decode in its absorbed form (DeepSeek-V2/V3): every head attends over one shared latent cache,
    keys of kv_lora + rope dims, values of kv_lora dims. Stored as a decode point with one KV head and the
    mean of the two widths as head_dim, the form ``moesim.hw.costs.measured.attention_core_fn`` queries for MLA."""
    out, dt = [], DTYPES[dname]
    for heads, lora, rope in shapes:
        for batch in batches:
            for ctx in contexts:
                q = torch.randn(batch, heads, 1, lora + rope, device=b.device).to(dt)
                k = torch.randn(batch, 1, ctx, lora + rope, device=b.device).to(dt)
                v = torch.randn(batch, 1, ctx, lora, device=b.device).to(dt)
                out.append({"context": ctx, "batch": batch, "heads": heads, "kv_heads": 1,
                            "head_dim": (2 * lora + rope) / 2, "dtype": dname, "mla": [lora, rope],
                            **b.time(lambda q=q, k=k, v=v: P.attention_decode(q, k, v))})
        b.progress(f"attention MLA decode {heads} heads, latent {lora}+{rope}")
    return out
