"""The attention core in silicon profiles: SGLang's FlashAttention-3 (MHA/GQA) and FlashMLA-style MLA
kernels timed by others (aiconfigurator's context/generation attention and MLA tables), BF16, no window.

Per family, a non-negative sum fitted on relative error (times in seconds, sizes in elements):
- ``gqa_decode``: one token per sequence against ``ctx`` cached tokens:
  c_one + c_kv,band · B·ctx·kv·d·4 (K and V bytes, at a rate per band of the B·kv work units: < 16,
  16-128, ≥ 128, since few units leave SMs idle) + c_f · 4·B·heads·ctx·d (FLOPs) + c_h · B·heads
  + c_s · B + c_q · B·heads·d·4 (per sequence: scheduling, the query read and the output written);
- ``gqa_prefill``: causal prompts of ``L`` tokens: c_one + c_f · 2·B·heads·L²·d + c_io · B·L·(heads + 2kv)·d·2;
- ``mla_decode``: absorbed MLA (keys kv_lora + rope, values kv_lora, one latent head):
  c_one + c_kv · B·ctx·(kv_lora + rope)·2 + c_f · 2·B·heads·ctx·(2·kv_lora + rope) + c_b · B·heads;
- ``mla_prefill``: naive MLA over the prompt: c_one + c_f · B·heads·L²·(d_qk + d_v) + c_io · B·L·heads·(d_qk + 2·d_v)·2.
MLA rows are DeepSeek's shape (kv_lora 512, rope 64, nope 128, v 128), the only one the tables measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moesim.hw.costs.fitting import ape, nnls_relative, unpack_rows

MLA = {"kv_lora": 512, "rope": 64, "nope": 128, "v": 128}


def attn_terms(family: str, r: dict[str, Any]) -> np.ndarray:
    """Regressors of one row {batch, heads, kv, d, ctx (decode) or seq (prefill)}."""
    b, h = float(r["batch"]), float(r["heads"])
    if family == "gqa_decode":  # the KV read's rate by the work units (sequence, KV head) that share the GPU
        ctx, kv, d = float(r["ctx"]), float(r["kv"]), float(r["d"])
        units, kv_bytes = b * kv, b * ctx * kv * d * 4
        bands = [kv_bytes * (lo <= units < hi) for lo, hi in ((0, 16), (16, 128), (128, np.inf))]
        return np.array([1.0, *bands, 4 * b * h * ctx * d, b * h, b, b * h * d * 4])
    if family == "gqa_prefill":
        seq, kv, d = float(r["seq"]), float(r["kv"]), float(r["d"])
        return np.array([1.0, 2 * b * h * seq * seq * d, b * seq * (h + 2 * kv) * d * 2])
    lora, rope, nope, v = MLA["kv_lora"], MLA["rope"], MLA["nope"], MLA["v"]
    if family == "mla_decode":
        ctx = float(r["ctx"])
        return np.array([1.0, b * ctx * (lora + rope) * 2, 2 * b * h * ctx * (2 * lora + rope), b * h])
    seq = float(r["seq"])
    return np.array([1.0, b * h * seq * seq * (nope + rope + v), b * seq * h * (nope + rope + 2 * v) * 2])


def fit_attention(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Coefficients per family from fit rows {family, ..., latency_s}."""
    out = {}
    for fam in sorted({r["family"] for r in rows}):
        sel = [r for r in rows if r["family"] == fam]
        out[fam] = nnls_relative(np.stack([attn_terms(fam, r) for r in sel]),
                                 np.array([r["latency_s"] for r in sel])).tolist()
    return out


class AttentionModel:
    """A silicon profile's attention fit: ``time(family, row)`` and a core function for a model."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body, self.coef = body, {k: np.array(v) for k, v in body["coef"].items()}

    def time(self, family: str, row: dict[str, Any]) -> float:
        return float(attn_terms(family, row) @ self.coef[family])

    def held_out_errors(self) -> dict[str, dict[str, float]]:
        groups: dict[str, tuple[list[float], list[float]]] = {}
        for r in unpack_rows(self.body["rows_held_out"]):
            g = groups.setdefault(r["group"], ([], []))
            g[0].append(self.time(r["family"], r))
            g[1].append(r["latency_s"])
        return {k: ape(np.array(v[0]), np.array(v[1])) for k, v in sorted(groups.items())}

    def core_fn(self, m: Any, kind: Any):
        """``(tokens [G], decode, context) -> seconds [G]`` for blocks of attention ``kind`` of a ``ModelSpec``
        (data-parallel attention), or None when the tables have no fit for it: a kind of no measured family
        (``kind.family``), or MLA of another shape than DeepSeek's (the only one measured)."""
        heads = m.num_attention_heads
        fam = (f"{kind.family}_decode", f"{kind.family}_prefill")
        extra = FAMILY_COLUMNS.get(kind.family, lambda m, kind: None)(m, kind)
        if extra is None or not all(f in self.coef for f in fam):
            return None

        def core(tokens: np.ndarray, decode: bool, context: int) -> np.ndarray:
            out = []
            for t in np.asarray(tokens, dtype=float):
                if t <= 0:
                    out.append(0.0)
                elif decode:
                    out.append(self.time(fam[0], {"batch": t, "heads": heads, "ctx": context, **extra}))
                else:
                    out.append(self.time(fam[1], {"batch": t / context, "heads": heads, "seq": context, **extra}))
            return np.array(out)
        return core


def _gqa_columns(m: Any, kind: Any) -> dict[str, int]:
    return {"kv": kind.cache_heads(m), "d": kind.core_dims(m, False)[0]}


def _mla_columns(m: Any, kind: Any) -> dict[str, int] | None:
    return {} if (m.kv_lora_rank, m.qk_rope_head_dim) == (MLA["kv_lora"], MLA["rope"]) else None


# the extra columns of each table family for one model (None: the family's rows do not cover its shape)
FAMILY_COLUMNS = {"gqa": _gqa_columns, "mla": _mla_columns}
