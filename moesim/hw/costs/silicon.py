"""Silicon profiles: kernel latencies measured on real GPUs by others, fitted to moesim's cost pieces.

Written by ``python -m moesim.calibrate.import_aic`` from NVIDIA aiconfigurator's perf database (Apache-2.0). A
profile keeps the rows it was fitted on and the rows held out from the fit, so CI refits and re-predicts
it without the database. No torch, no pandas.

Routed experts (one fused MoE kernel per GPU per layer, SGLang's Triton ``fused_moe``): for per-expert
token counts ``n_e`` on one GPU, expert FFN width I, hidden H and weight bytes b per parameter,

    t = c_one + c_w · Σ_{n_e > 0} 3·H·I·b + c_a · Σ n_e·(H + 3I)·2 + c_t · Σ ⌈n_e / 64⌉
        + Σ_bands c_f,band · Σ_{n_e in band} 6·H·I·n_e

(a roofline in additive form: launch, weight streaming per active expert, activation bytes, a cost per
64-row tile for padding and wave quantisation, and FLOPs at a rate per band of the expert's own token count
— n < 16, 16-128, 128-1024, ≥ 1024 — the measured efficiency curve of the grouped GEMM against tokens per
expert), non-negative least squares on relative error per weight dtype. On an expert shape the table
measured, a measured efficiency curve corrects it: the ratio of measured to modelled time along the balanced
series, against tokens per expert slot, interpolated in log space (``curves``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moesim.hw.costs.base import CostModel
from moesim.hw.costs.fitting import ape, nnls_relative, unpack_rows

FORMAT = "moesim-silicon/1"
TILE = 64
# FLOP terms by the expert's own token count: a grouped GEMM's efficiency rises with the rows an expert has
FLOP_EDGES = (16.0, 128.0, 1024.0)
TERMS = ("one", "weights", "act", "tiles", "flops_lt16", "flops_16_128", "flops_128_1024", "flops_ge1024")
WEIGHT_BYTES = {"bfloat16": 2.0, "fp8_block": 1.0}
DTYPE_OF = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8_block"}  # moesim weight dtype -> table's


def moe_terms(counts: np.ndarray, hidden: int, inter: int, dtype: str) -> np.ndarray:
    """Regressors [..., 5] of the fused MoE kernel for per-expert token counts ``counts`` [..., E]."""
    n = np.asarray(counts, dtype=float)
    active = (n > 0).sum(axis=-1)
    total = n.sum(axis=-1)
    cols = [np.where(active > 0, 1.0, 0.0), active * 3.0 * hidden * inter * WEIGHT_BYTES[dtype],
            total * (hidden + 3.0 * inter) * 2.0, np.ceil(n / TILE).sum(axis=-1)]
    band = np.digitize(n, FLOP_EDGES)
    cols += [(6.0 * hidden * inter * n * (band == j)).sum(axis=-1) for j in range(len(FLOP_EDGES) + 1)]
    return np.stack(cols, axis=-1)


def balanced_counts(tokens: int, experts: int, top_k: int) -> np.ndarray:
    """Per-expert counts [E] of aiconfigurator's "balanced" routing: token i's j-th expert is
    (i + j·s) mod E with s = ⌈E/k⌉, the token index scaled to i·s/T when T < s."""
    s = -(-experts // top_k)
    i = np.arange(tokens)[:, None].astype(float)
    base = i if tokens >= s else np.floor(i * s / tokens)
    ids = (base + np.arange(top_k)[None, :] * s).astype(np.int64) % experts
    return np.bincount(ids.ravel(), minlength=experts)


def power_law_counts(tokens: int, experts: int, top_k: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Per-expert counts [E] of aiconfigurator's "power_law_<alpha>" routing: i.i.d. continuous power-law
    draws on [1, 0.8·T] (on [0.01, 2] when T·k ≤ E), scaled to T·k and rounded; the rounding remainder
    goes to the largest experts one by one (to the smallest when over)."""
    lo, hi = (1.0, tokens * 0.8) if tokens * top_k > experts else (0.01, 2.0)
    u = rng.random(experts)
    x = ((hi ** (1 - alpha) - lo ** (1 - alpha)) * u + lo ** (1 - alpha)) ** (1 / (1 - alpha))
    n = np.round(x / x.sum() * tokens * top_k).astype(np.int64)
    delta = tokens * top_k - int(n.sum())
    order = np.argsort(-n, kind="stable")
    for j in range(abs(delta)):
        n[order[j % experts] if delta > 0 else order[-(j % experts) - 1]] += 1 if delta > 0 else -1
    n = np.maximum(n, 0)
    for _ in range(int(n.sum()) - tokens * top_k):  # clipped negatives: take the excess off the largest
        n[np.argmax(n)] -= 1
    return n


def routed_counts(n: np.ndarray, tokens: int, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """What the kernel then computes from target counts n [E]: the collector lays the assignments out
    expert by expert (largest count first) into a [k, T] grid, so token t's row may name an expert twice;
    top-k over the one-hot logits keeps each named expert once and fills the row with experts it lacks,
    taken among tied zero logits: in no defined order, here uniformly (the measured times match distinct
    fills, not shared lowest ids). Returns the per-expert counts [E] actually routed."""
    experts = n.size
    order = np.argsort(-n, kind="stable")
    rows = np.sort(np.repeat(order, n).reshape(top_k, tokens).T, axis=1)  # [T, k]
    dup = np.zeros(rows.shape, dtype=bool)
    dup[:, 1:] = rows[:, 1:] == rows[:, :-1]
    out = np.bincount(rows[~dup], minlength=experts)
    todo = np.flatnonzero(dup.any(axis=1))
    if todo.size:  # rows naming an expert twice: fill them with distinct experts they lack, at random
        named = np.zeros((todo.size, experts), dtype=bool)
        named[np.arange(todo.size)[:, None], rows[todo]] = True
        keys = np.where(named, np.inf, rng.random(named.shape))
        rank = np.argsort(np.argsort(keys, axis=1), axis=1)  # 0-based rank of each unnamed expert
        out += (~named & (rank < dup[todo].sum(axis=1)[:, None])).sum(axis=0)
    return out


def counts_of(row: dict[str, Any], draws: int = 4, seed: int = 0) -> np.ndarray:
    """Per-expert counts [D, E] a table row's distribution stands for (one row when balanced)."""
    t, e, k, dist = row["tokens"], row["experts"], row["top_k"], row["distribution"]
    if dist == "balanced":
        return balanced_counts(t, e, k)[None, :]
    alpha = float(dist.rsplit("_", 1)[1])
    rng = np.random.default_rng(seed)
    return np.stack([routed_counts(power_law_counts(t, e, k, alpha, rng), t, k, rng) for _ in range(draws)])


def shape_key(row: dict[str, Any]) -> str:
    return f"{row['hidden']}x{row['inter']}x{row['top_k']}x{row['experts']}:{row['dtype']}"


def row_terms(row: dict[str, Any]) -> np.ndarray:
    """Mean regressors [5] over the row's distribution draws."""
    return moe_terms(counts_of(row), row["hidden"], row["inter"], row["dtype"]).mean(axis=0)


def fit_moe(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Coefficients per dtype (seconds per unit of each term) from balanced rows."""
    out = {}
    for dtype in sorted({r["dtype"] for r in rows}):
        sel = [r for r in rows if r["dtype"] == dtype]
        a = np.stack([row_terms(r) for r in sel])
        out[dtype] = nnls_relative(a, np.array([r["latency_s"] for r in sel])).tolist()
    return out


def per_expert(counts: np.ndarray) -> np.ndarray:
    """Mean tokens per expert slot [...] of counts [..., E] (floored at 1e-3)."""
    return np.maximum(np.asarray(counts, dtype=float).mean(axis=-1), 1e-3)


def fit_curves(rows: list[dict[str, Any]], coef: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """Measured / modelled time along each fitted shape's balanced series, against tokens per expert slot
    (T·k/E: the variable a GPU's share of an expert-parallel layer, Σn over its S slots / S, has in common
    with the table's single-GPU rows): {shape: {per_expert, ratio}}."""
    curves: dict[str, dict[str, list[float]]] = {}
    for r in sorted(rows, key=lambda r: (shape_key(r), r["tokens"])):
        model = float(row_terms(r) @ np.array(coef[r["dtype"]]))
        x = float(per_expert(balanced_counts(r["tokens"], r["experts"], r["top_k"])))
        c = curves.setdefault(shape_key(r), {"per_expert": [], "ratio": []})
        if c["per_expert"] and x <= c["per_expert"][-1]:
            continue
        c["per_expert"].append(x)
        c["ratio"].append(r["latency_s"] / model)
    return curves


@dataclass(frozen=True)
class SiliconProfile:
    """A fitted silicon profile: provenance, GPU figures, MoE coefficients and curves, stored rows."""

    name: str
    doc: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> SiliconProfile:
        from moesim.util import safeio
        doc = safeio.load_json(Path(path), what="silicon profile", limit=1 << 30)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a moesim silicon profile (format {doc.get('format')!r}, expected {FORMAT!r})")
        return cls(doc["name"], doc)

    @property
    def moe(self) -> dict[str, Any]:
        return self.doc["moe"]

    def rows(self, which: str) -> list[dict[str, Any]]:
        """The stored ``fit`` or ``held_out`` rows as dicts."""
        return unpack_rows(self.moe[f"rows_{which}"])

    def has_dtype(self, dtype: str) -> bool:
        return dtype in self.moe["coef"]

    def curve(self, hidden: int, inter: int, top_k: int, experts: int, dtype: str) -> dict[str, list[float]] | None:
        """The measured efficiency curve for this expert shape: the same (H, I, k, E) if the table has it,
        else a series with the same (H, I) and dtype (the one with the most experts), else None."""
        curves = self.moe["curves"]
        exact = curves.get(f"{hidden}x{inter}x{top_k}x{experts}:{dtype}")
        if exact is not None:
            return exact
        near = sorted((int(k.split(":")[0].split("x")[3]), k) for k in curves
                      if k.startswith(f"{hidden}x{inter}x") and k.endswith(f":{dtype}"))
        return curves[near[-1][1]] if near else None

    def moe_time(self, counts: np.ndarray, hidden: int, inter: int, top_k: int, dtype: str,
                 curve: bool = True, experts: int | None = None) -> np.ndarray:
        """Fused MoE kernel seconds [...] for per-expert counts [..., E] on one GPU each. ``experts``: the
        model's expert count (curve lookup; default E, the table's single-GPU case)."""
        n = np.asarray(counts, dtype=float)
        t = moe_terms(n, hidden, inter, dtype) @ np.array(self.moe["coef"][dtype])
        c = self.curve(hidden, inter, top_k, experts or n.shape[-1], dtype) if curve else None
        if c is not None:
            x = np.log(per_expert(n))
            t = t * np.exp(np.interp(x, np.log(c["per_expert"]), np.log(c["ratio"])))
        return np.where(n.sum(axis=-1) > 0, t, 0.0)

    def predict_row(self, row: dict[str, Any], curve: bool = True) -> float:
        """Mean predicted seconds of a table row over its distribution's draws."""
        return float(self.moe_time(counts_of(row), row["hidden"], row["inter"], row["top_k"], row["dtype"],
                                   curve).mean())


def held_out_errors(p: SiliconProfile) -> dict[str, dict[str, float]]:
    """Per held-out group (``rows_held_out[*].group``): errors of the profile's predictions."""
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for r in p.rows("held_out"):
        pred = p.predict_row(r)
        g = groups.setdefault(r["group"], ([], []))
        g[0].append(pred)
        g[1].append(r["latency_s"])
    return {k: ape(np.array(v[0]), np.array(v[1])) for k, v in sorted(groups.items())}


class SiliconCosts(CostModel):
    """The engine's compute costs with routed and shared experts from a silicon profile; every other piece
    (router, permute, regroup, unpermute) from the roofline on the profile's GPU figures (``base``)."""

    def __init__(self, profile: SiliconProfile, roofline: Any, model: Any, top_k: int) -> None:
        from moesim.hw.costs.silicon_gemm import GemmModel
        self.silicon, self.base, self.model, self.k = profile, roofline, model, top_k
        self.dtype = DTYPE_OF.get(model.weight_dtype, "")
        body = profile.doc.get("gemm")
        gemm = GemmModel(body) if body else None
        self.gemm = gemm if gemm is not None and gemm.has_dtype(self.dtype) else None
        prov = profile.doc["provenance"]
        what = "routed and shared experts" if profile.has_dtype(self.dtype) else \
            f"no {model.weight_dtype} rows: experts from the roofline too"
        dense = "; attention projections, dense FFNs, router and head GEMMs" if self.gemm else ""
        dense += "; the attention core" if profile.doc.get("attention") else ""
        self.source = (f"silicon profile {profile.name} ({prov['tool']}, {prov['framework']}, {prov['device_name']}): "
                       f"{what}{dense}; roofline on the GPU figures for the rest")

    def attention_core_fn(self, m: Any, kind: Any):
        """The attention core ``(tokens [G], decode, context) -> seconds [G]`` from the profile's attention
        tables for ``ModelSpec`` m, or None (no table, or an attention kind the tables do not cover)."""
        from moesim.hw.costs.silicon_attn import AttentionModel
        body = self.silicon.doc.get("attention")
        return AttentionModel(body).core_fn(m, kind) if body else None

    def gemm_fn(self, bf16: bool = False):
        """``(tokens [G], n, k) -> seconds [G]`` from the profile's GEMM table (weights in the model's dtype,
        or BF16), or None when the profile has none for that dtype."""
        if self.gemm is None:
            return None
        dtype = "bfloat16" if bf16 else self.dtype
        if not self.gemm.has_dtype(dtype):
            return None
        return lambda tokens, n, k: self.gemm.time(np.asarray(tokens, dtype=float), int(n), int(k), dtype)

    def router(self, tokens: np.ndarray) -> np.ndarray:
        """Router GEMM (BF16, H → E) from the GEMM table, plus the roofline's scoring and top-k."""
        fn, m = self.gemm_fn(bf16=True), self.model
        if fn is None:
            return self.base.router(tokens)
        c = self.base.c
        return fn(tokens, m.experts, m.hidden) + c.kernel(0.0, np.asarray(tokens, dtype=float) * m.experts * 4)

    def permute(self, tokens: np.ndarray) -> np.ndarray:
        return self.base.permute(tokens)

    def unpermute(self, tokens: np.ndarray) -> np.ndarray:
        return self.base.unpermute(tokens)

    def regroup(self, slot_tokens: np.ndarray) -> np.ndarray:
        return self.base.regroup(slot_tokens)

    def expert(self, slot_tokens: np.ndarray, regroup: bool = False) -> np.ndarray:
        """slot_tokens [G, S] -> [G] seconds: one fused MoE kernel per GPU over its S local slots."""
        if not self.silicon.has_dtype(self.dtype):
            return self.base.expert(slot_tokens, regroup)
        m = self.model
        t = self.silicon.moe_time(slot_tokens, m.expert_hidden, m.inter, self.k, self.dtype, experts=m.experts)
        return t + self.base.regroup(slot_tokens) if regroup else t

    def shared(self, tokens: np.ndarray) -> np.ndarray:
        """Shared experts: two GEMMs (gate+up fused, down) from the GEMM table plus the activation, else one
        more always-on expert of the shared width (the MoE fit's parametric part)."""
        m, fn = self.model, self.gemm_fn()
        if m.shared_inter and fn is not None:
            t = np.asarray(tokens, dtype=float)
            act = self.base.c.kernel(0.0, t * 3 * m.shared_inter * 2)
            return np.where(t > 0, fn(t, 2 * m.shared_inter, m.hidden) + fn(t, m.hidden, m.shared_inter) + act, 0.0)
        if not m.shared_inter or not self.silicon.has_dtype(self.dtype):
            return self.base.shared(tokens)
        return self.silicon.moe_time(np.asarray(tokens, dtype=float)[:, None], m.hidden, m.shared_inter, 1, self.dtype,
                               curve=False)
