"""Measured cost profiles (written by ``calibrate/``): fits, their errors, and a cost model built on them.

A profile stores every measured point of every MoE layer piece, so a fit can be redone anywhere without
timing (CI does). For a query, a piece answers by **interpolation** (piecewise linear in log tokens and
log time) when the query's shape was measured and its token count lies inside the measured range, and by
a **parametric** model otherwise: a non-negative sum of terms (a constant overhead, FLOP- and byte-proportional terms:
a roofline in additive form, as Calculon and Vidur fit their operators), fitted by least squares on
relative error. Both fits' errors are stored with the profile.

Pieces and their query variables (tokens T, copies C = T·k, hidden H, FFN width I, experts E):
``router`` (T, H, E), ``permute`` (C, H), ``expert`` (n tokens of one expert, H, I, dtype; 0 tokens cost
nothing), ``expert_call`` (one overhead per grouped call), ``unpermute`` (C, H, T), ``all_to_all``
(bytes through the busiest rank).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moesim.hw.costs.base import CostModel
from moesim.hw.costs.fitting import ape, nnls_relative

FORMAT = "moesim-profile/1"
MMAP_BYTES = 32 * 2**20


CACHE_BYTES = 8 * 2**20


def _kv(p: dict[str, Any]) -> float:
    return 2.0 * p.get("batch", 0) * p.get("kv_heads", 0) * p.get("head_dim", 0) * p.get("context", 0) \
        * _elem(p.get("dtype"))


def _elem(dtype: str | None) -> int:
    return 2 if dtype in ("bfloat16", "float16") else 4

PIECES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # name: (x key, shape keys, term names)
    "router": ("tokens", ("hidden", "experts", "dtype"), ("one", "t_h_e", "t_e", "t_h")),
    "permute": ("copies", ("hidden", "dtype"), ("one", "c_h", "c", "c_h_mmap")),
    "expert": ("tokens", ("hidden", "inter", "dtype"), ("one", "weights", "flops", "act")),
    "unpermute": ("copies", ("hidden", "dtype"), ("one", "c_h", "c", "c_h_mmap")),
    "all_to_all": ("bytes", ("world",), ("one", "bytes")),
    "attn_prefill": ("tokens", ("seq", "heads", "head_dim", "dtype"), ("one", "attn_flops", "attn_io")),
    "attn_decode": ("context", ("batch", "heads", "kv_heads", "head_dim", "dtype"),
                    ("one", "dec_flops", "kv_read", "kv_read_uncached")),
}


def _term(name: str, p: dict[str, Any]) -> float:
    """Regressors: 'one' is the fixed overhead; the others are proportional to FLOPs or bytes moved."""
    t, c = p.get("tokens", 0.0), p.get("copies", 0.0)
    h, e, i = p.get("hidden", 0.0), p.get("experts", 0.0), p.get("inter", 0.0)
    return {
        "one": 1.0,
        "t_h_e": t * h * e,  # router GEMM
        "t_e": t * e,  # scoring + top-k over E scores
        "t_h": t * h,  # reading the activations
        "c_h": c * h,  # gathering / scattering C rows of H
        "c": c,
        # outputs over glibc's largest mmap threshold (32 MiB on 64-bit, mallopt(3)) are fresh pages on
        # every call: the page faults add a second per-byte cost (measured: ~6x slower per byte on CPU)
        "c_h_mmap": c * h if c * h * _elem(p.get("dtype")) > MMAP_BYTES else 0.0,
        "weights": 3.0 * h * i,  # one expert's weights read once per call
        "flops": 6.0 * t * h * i,  # three GEMMs, 2 FLOPs per multiply-add
        "act": t * (h + 3.0 * i),  # activations in and out, SiLU·up
        "bytes": p.get("bytes", 0.0),
        # attention core: causal prefill does QK^T and PV over L/2 keys on average; decode over all L
        "attn_flops": 2.0 * t * p.get("heads", 0) * p.get("head_dim", 0) * p.get("seq", 0),
        "attn_io": 4.0 * t * p.get("heads", 0) * p.get("head_dim", 0) * _elem(p.get("dtype")),
        "dec_flops": 4.0 * p.get("batch", 0) * p.get("heads", 0) * p.get("head_dim", 0) * p.get("context", 0),
        "kv_read": _kv(p),
        # a KV cache larger than the cache hierarchy streams from DRAM: a second, steeper per-byte cost
        # (measured on the reference CPU: per-byte decode time roughly doubles above ~8 MiB)
        "kv_read_uncached": _kv(p) if _kv(p) > CACHE_BYTES else 0.0,
    }[name]


def fit_terms(points: list[dict[str, Any]], terms: Sequence[str]) -> np.ndarray:
    """Non-negative least squares on relative error: minimise Σ((model − t)/t)² over coefficients ≥ 0.
    Active-set by elimination: refit without any term whose coefficient came out negative."""
    a = np.array([[_term(n, p) for n in terms] for p in points])
    return nnls_relative(a, np.array([p["median_s"] for p in points]))


@dataclass(frozen=True)
class Piece:
    """One piece's measured points and parametric fit: coefficients per dtype (a BF16 GEMM on a CPU without
    BF16 units is ~85x slower than FP32, so one set of coefficients cannot serve both)."""

    name: str
    points: list[dict[str, Any]]
    coef: dict[str, np.ndarray]

    @property
    def xkey(self) -> str:
        return PIECES[self.name][0]

    def parametric(self, q: dict[str, Any]) -> float:
        coef = self.coef.get(q.get("dtype", ""), next(iter(self.coef.values())))
        return float(sum(c * _term(n, q) for c, n in zip(coef, PIECES[self.name][2])))

    def _series(self, q: dict[str, Any], exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        keys = PIECES[self.name][1]
        sel = [(p[self.xkey], p["median_s"]) for j, p in enumerate(self.points)
               if j != exclude and all(p.get(k) == q.get(k) for k in keys)]
        if not sel:
            return np.empty(0), np.empty(0)
        xs, ys = np.array(sorted(sel)).T
        return xs, ys

    def predict(self, q: dict[str, Any], exclude: int | None = None) -> tuple[float, str]:
        """Seconds for query q, and which fit answered ('interpolated' or 'parametric')."""
        xs, ys = self._series(q, exclude)
        x = q[self.xkey]
        if xs.size >= 2 and xs[0] <= x <= xs[-1] and xs[0] > 0:
            # log-log: time is close to a power of size between grid points spaced by factors of 2-8
            return float(np.exp(np.interp(np.log(x), np.log(xs), np.log(ys)))), "interpolated"
        return self.parametric(q), "parametric"

    def errors(self) -> dict[str, dict[str, float]]:
        """Parametric error over all points; interpolation error leaving each interior point out."""
        meas = np.array([p["median_s"] for p in self.points])
        par = np.array([self.parametric(p) for p in self.points])
        loo_p, loo_m = [], []
        for j, p in enumerate(self.points):
            t, how = self.predict(p, exclude=j)
            if how == "interpolated":
                loo_p.append(t)
                loo_m.append(p["median_s"])
        return {"parametric": ape(par, meas), "interpolation_leave_one_out": ape(np.array(loo_p), np.array(loo_m))}


def fit_piece(name: str, points: list[dict[str, Any]]) -> Piece:
    """Parametric coefficients for each dtype among the points (key '' when points carry no dtype)."""
    by_dtype: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_dtype.setdefault(p.get("dtype", ""), []).append(p)
    coef = {d: fit_terms(pts, PIECES[name][2]) for d, pts in sorted(by_dtype.items())}
    return Piece(name, points, coef or {"": np.zeros(len(PIECES[name][2]))})


@dataclass(frozen=True)
class Profile:
    """A measured profile: provenance, figures for the topology, and fitted pieces."""

    name: str
    provenance: dict[str, Any]
    gpu: dict[str, Any]
    pieces: dict[str, Piece]
    expert_call_s: float
    dtype: str = "float32"

    @classmethod
    def from_doc(cls, doc: dict[str, Any], refit: bool = False) -> Profile:
        """From a profile document. ``refit``: fit again from the stored points instead of using the stored
        coefficients (CI checks both agree)."""
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a moesim profile (format {doc.get('format')!r}, expected {FORMAT!r})")
        pieces = {}
        for name, body in doc["pieces"].items():
            if name not in PIECES:
                continue
            pts = body["points"]
            pieces[name] = fit_piece(name, pts) if refit or "coef" not in body else \
                Piece(name, pts, {d: np.array(c, dtype=float) for d, c in body["coef"].items()})
        return cls(doc["name"], doc["provenance"], doc.get("gpu", {}), pieces, float(doc.get("expert_call_s", 0.0)),
                   doc.get("default_dtype", "float32"))

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        from moesim.util import safeio
        return cls.from_doc(safeio.load_json(Path(path), what="profile", limit=1 << 30))

    def has(self, piece: str) -> bool:
        return piece in self.pieces and bool(self.pieces[piece].points)

    def time(self, piece: str, q: dict[str, Any]) -> float:
        return self.pieces[piece].predict(q)[0]


def fit_document(doc: dict[str, Any]) -> dict[str, Any]:
    """Fill in each piece's coefficients and fit errors from its points (what calibrate/ stores)."""
    out = dict(doc)
    out["pieces"] = {}
    for name, body in doc["pieces"].items():
        piece = fit_piece(name, body["points"])
        out["pieces"][name] = {**body, "terms": list(PIECES[name][2]),
                               "coef": {d: c.tolist() for d, c in piece.coef.items()},
                               "fit_error_percent": piece.errors()}
    return out


class MeasuredCosts(CostModel):
    """The engine's compute costs from a measured profile (``CostModel``).

    Per GPU: gate = router(T) + permute(T·k); experts = one call overhead + Σ over local experts with
    tokens of expert(n); unpermute(T·k); shared experts = expert(T) at the shared width.
    """

    def __init__(self, profile: Profile, hidden: int, inter: int, experts: int, top_k: int,
                 shared_inter: int) -> None:
        self.p, self.h, self.i, self.e, self.k, self.shared_i = profile, hidden, inter, experts, top_k, shared_inter
        self.source = f"measured profile {profile.name} ({profile.provenance.get('device_name', '?')})"

    def _q(self, **kw: Any) -> dict[str, Any]:
        return {"hidden": self.h, "dtype": self.p.dtype, **kw}

    def gate(self, tokens: np.ndarray) -> np.ndarray:
        return self.router(tokens) + self.permute(tokens)

    def router(self, tokens: np.ndarray) -> np.ndarray:
        return np.array([self.p.time("router", self._q(tokens=t, experts=self.e)) if t > 0 else 0.0
                         for t in tokens])

    def permute(self, tokens: np.ndarray) -> np.ndarray:
        return np.array([self.p.time("permute", self._q(copies=t * self.k)) if t > 0 else 0.0 for t in tokens])

    def unpermute(self, tokens: np.ndarray) -> np.ndarray:
        return np.array([self.p.time("unpermute", self._q(copies=t * self.k, tokens=t)) if t > 0 else 0.0
                         for t in tokens])

    def expert(self, slot_tokens: np.ndarray, regroup: bool = False) -> np.ndarray:
        """slot_tokens [G, S] -> [G] seconds. ``regroup``: received copies arrive grouped by source and are
        sorted by local expert before the GEMMs and back after (Megatron-Core's alltoall dispatcher
        ``sort_chunks_by_idxs``; SGLang's ep_scatter/ep_gather with DeepEP), costed as two permutes."""
        vals, inv = np.unique(slot_tokens, return_inverse=True)
        per = np.array([self.p.time("expert", self._q(tokens=n, inter=self.i)) if n > 0 else 0.0 for n in vals])
        t = per[inv.reshape(slot_tokens.shape)].sum(axis=1)
        t = np.where((slot_tokens > 0).any(axis=1), t + self.p.expert_call_s, 0.0)
        return t + self.regroup(slot_tokens) if regroup else t

    def regroup(self, slot_tokens: np.ndarray) -> np.ndarray:
        """Two permutes of the received copies [G] (zero with one local expert slot)."""
        if slot_tokens.shape[1] <= 1:
            return np.zeros(slot_tokens.shape[0])
        return np.array([2 * self.p.time("permute", self._q(copies=c)) if c > 0 else 0.0
                         for c in slot_tokens.sum(axis=1)])

    def shared(self, tokens: np.ndarray) -> np.ndarray:
        if not self.shared_i:
            return np.zeros(len(tokens))
        return np.array([self.p.time("expert", self._q(tokens=t, inter=self.shared_i)) if t > 0 else 0.0
                         for t in tokens])

    def attention_core_fn(self, m: Any, kind: Any):
        return attention_core_fn(self.p, m, kind)

    def dense_ffn_fn(self, m: Any):
        return dense_ffn_fn(self.p, m)


def dense_ffn_fn(profile: Profile, m: Any):
    """``tokens [G] -> seconds [G]``: a dense SwiGLU FFN of width ``intermediate_size``, timed by the
    profile's expert piece (the same three GEMMs), or None without that piece."""
    if not profile.has("expert") or not m.intermediate_size:
        return None

    def ffn(tokens: np.ndarray) -> np.ndarray:
        return np.array([profile.time("expert", {"tokens": t, "hidden": m.hidden_size, "inter": m.intermediate_size,
                                                 "dtype": profile.dtype}) for t in tokens])
    return ffn


def attention_core_fn(profile: Profile, m: Any, kind: Any):
    """``(tokens [G], decode, context) -> seconds [G]`` for blocks of attention ``kind`` from the profile's
    attention pieces (measured as MHA/GQA), or None when the profile has none. Each kind maps through its
    core dimensions: head_dim = (d_qk + d_v) / 2 (MLA: its naive prefill form, and its absorbed decode form
    with one shared latent "KV head")."""
    if not (profile.has("attn_prefill") and profile.has("attn_decode")):
        return None
    heads = m.num_attention_heads
    pre_d, dec_d = (_mean_dim(kind.core_dims(m, decode)) for decode in (False, True))
    kv_heads = kind.cache_heads(m)

    def core(tokens: np.ndarray, decode: bool, context: int) -> np.ndarray:
        q = {"heads": heads, "dtype": profile.dtype}
        if decode:
            return np.array([profile.time("attn_decode", {**q, "context": context, "batch": t, "kv_heads": kv_heads,
                                                          "head_dim": dec_d}) for t in tokens])
        return np.array([profile.time("attn_prefill", {**q, "tokens": t, "seq": context, "head_dim": pre_d})
                         for t in tokens])
    return core


def _mean_dim(dims: tuple[int, int]) -> float | int:
    """(d_qk + d_v) / 2, kept an integer when both are equal (a GQA head_dim)."""
    dqk, dv = dims
    return dqk if dqk == dv else (dqk + dv) / 2
