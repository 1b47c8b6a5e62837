"""``python -m moesim.calibrate.tiny_moe``: train a tiny MoE language model on real text on the CPU, then record its
routing on held-out text as a token trace that moesim replays (``router.stats: {kind: trace, path: ...}``).

Text: the Python standard library's own source (available offline wherever Python is), byte-level. Files
are split by name hash into training (90%) and held-out (10%) sets. Random tokens are known to overstate
routing skew; real text gives the router real structure to learn.

Model: byte embedding, ``layers`` blocks of causal self-attention + a token-choice top-k MoE FFN (softmax
router, SwiGLU experts), with the Switch Transformer load-balancing loss (Fedus et al. 2022, eq. 4,
coefficient 0.01). The recorded trace keeps ``topk_ids`` and ``topk_weights`` [layers, tokens, k].
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# the traces ship with the repository (calibrate/traces), not with the package
OUT = Path(__file__).resolve().parents[2] / "calibrate" / "traces"


def corpus(max_bytes: int) -> tuple[bytes, bytes]:
    """(training, held-out) bytes from the standard library's .py files, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    train, held = bytearray(), bytearray()
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        data = path.read_bytes()
        bucket = held if hashlib.sha1(str(path.relative_to(root)).encode()).digest()[0] < 26 else train
        bucket.extend(data)
        if len(train) >= max_bytes and len(held) >= max_bytes // 8:
            break
    return bytes(train[:max_bytes]), bytes(held[: max_bytes // 8])


class MoE(nn.Module):
    def __init__(self, d: int, inter: int, experts: int, k: int) -> None:
        super().__init__()
        self.k, self.experts = k, experts
        self.gate = nn.Linear(d, experts, bias=False)
        self.w1 = nn.Parameter(torch.randn(experts, d, inter) * d ** -0.5)
        self.w3 = nn.Parameter(torch.randn(experts, d, inter) * d ** -0.5)
        self.w2 = nn.Parameter(torch.randn(experts, inter, d) * inter ** -0.5)
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.gate(x), dim=-1)
        w, ids = probs.topk(self.k, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        self.last = (ids.detach(), w.detach())
        out = torch.zeros_like(x)
        for e in range(self.experts):
            tok, slot = (ids == e).nonzero(as_tuple=True)
            if tok.numel():
                h = x[tok]
                y = (F.silu(h @ self.w1[e]) * (h @ self.w3[e])) @ self.w2[e]
                out.index_add_(0, tok, y * w[tok, slot].unsqueeze(1))
        # Switch load-balancing loss: E · Σ_e (fraction of tokens routed to e) · (mean router prob of e)
        frac = torch.bincount(ids[:, 0], minlength=self.experts).float() / x.shape[0]
        aux = self.experts * (frac * probs.mean(0)).sum()
        return out.reshape(shape), aux


class Block(nn.Module):
    def __init__(self, d: int, heads: int, inter: int, experts: int, k: int) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.moe = MoE(d, inter, experts, k)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.n1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        y, aux = self.moe(self.n2(x))
        return x + y, aux


class TinyMoE(nn.Module):
    def __init__(self, d=96, heads=4, layers=4, inter=192, experts=16, k=2, seq=128) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(256, d), nn.Parameter(torch.zeros(seq, d))
        self.blocks = nn.ModuleList(Block(d, heads, inter, experts, k) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 256)
        self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), 1))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = tokens.shape[1]
        x = self.emb(tokens) + self.pos[:t]
        aux = x.new_zeros(())
        for b in self.blocks:
            x, a = b(x, self.mask[:t, :t])
            aux = aux + a
        return self.head(self.norm(x)), aux


def batches(data: np.ndarray, batch: int, seq: int, rng: np.random.Generator):
    while True:
        starts = rng.integers(0, data.size - seq - 1, size=batch)
        x = np.stack([data[s:s + seq + 1] for s in starts]).astype(np.int64)
        yield torch.from_numpy(x[:, :-1]), torch.from_numpy(x[:, 1:])


def train(steps: int, seed: int, threads: int, log=print) -> tuple[TinyMoE, list[float], bytes]:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    train_bytes, held = corpus(4_000_000)
    data = np.frombuffer(train_bytes, dtype=np.uint8)
    model = TinyMoE()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    losses = []
    t0 = time.perf_counter()
    for step, (x, y) in zip(range(steps), batches(data, 16, 128, np.random.default_rng(seed))):
        logits, aux = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        (loss + 0.01 * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            log(f"[{time.perf_counter() - t0:6.1f} s] step {step:4d}  loss {np.mean(losses[-50:]):.3f} nats/byte")
    return model, losses, held


@torch.inference_mode()
def record(model: TinyMoE, held: bytes, tokens: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Route ``tokens`` held-out bytes (in 128-byte windows): ids, weights [layers, tokens, k]; held-out loss."""
    data = np.frombuffer(held, dtype=np.uint8)[: tokens + 1].astype(np.int64)
    x = torch.from_numpy(data[:tokens]).reshape(-1, 128)
    y = torch.from_numpy(data[1:tokens + 1]).reshape(-1, 128)
    logits, _ = model(x)
    loss = float(F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)))
    ids = np.stack([b.moe.last[0].numpy() for b in model.blocks])
    w = np.stack([b.moe.last[1].numpy() for b in model.blocks])
    return ids, w, loss


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m moesim.calibrate.tiny_moe", description=__doc__)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--tokens", type=int, default=8192, help="held-out tokens to record (multiple of 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=OUT / "tiny-moe-stdlib.npz")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    model, losses, held = train(a.steps, a.seed, a.threads)
    ids, w, held_loss = record(model, held, a.tokens - a.tokens % 128)
    from moesim.routing.analysis import gini
    ginis = [gini(np.bincount(layer.ravel(), minlength=16)) for layer in ids]
    meta = {"command": "python -m moesim.calibrate.tiny_moe " + " ".join(argv), "torch": torch.__version__,
            "python": sys.version.split()[0], "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": "4 blocks, d=96, 4 heads, 16 experts top-2, expert width 192, byte vocabulary",
            "text": "Python standard library .py sources (tests excluded), train/held-out split by path hash",
            "steps": a.steps, "train_loss_last50": float(np.mean(losses[-50:])), "held_out_loss": held_loss,
            "gini_per_layer": ginis, "wall_s": round(time.perf_counter() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, topk_ids=ids.astype(np.int16), topk_weights=w.astype(np.float16),
                        num_experts=np.int64(16))
    a.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
