"""Dense GEMMs in silicon profiles: ``y[m, n] = x[m, k] · W[k, n]`` timed by others (aiconfigurator's
``gemm_perf`` table: SGLang's ``torch.nn.functional.linear`` for BF16, DeepGEMM for FP8 block weights).

A GEMM's FLOPs over its weight bytes, 2m/b, depend on the row count m alone, so whether it is bound by
streaming the weights or by the tensor cores is a matter of m. The model therefore keeps, per dtype and per
fitted m, coefficients of

    t(m) = c_one(m) + c_w(m) · n·k + c_a(m) · (m·k + m·n)

fitted across every fitted (n, k) (non-negative least squares on relative error): a measured efficiency
curve against m. Between fitted m the coefficients are interpolated in log m; above the largest they grow
with m (compute-bound), below the smallest they stay. On a measured (n, k) the ratio of measured to
modelled time along its m series corrects it further. Times in seconds; m, n, k in elements.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moesim.hw.costs.fitting import ape, nnls_relative, unpack_rows

TERMS = ("one", "nk", "act")


def gemm_terms(m: np.ndarray, n: float, k: float) -> np.ndarray:
    """Regressors [..., 3] for row counts m [...] of one (n, k) GEMM."""
    m = np.asarray(m, dtype=float)
    return np.stack([np.ones_like(m), np.full_like(m, float(n) * k), m * k + m * n], axis=-1)


def fit_gemm(rows: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Per dtype: the fitted m values and the coefficients [len(m), 3] at each."""
    out: dict[str, dict[str, list]] = {}
    for dtype in sorted({r["dtype"] for r in rows}):
        ms = sorted({r["m"] for r in rows if r["dtype"] == dtype})
        coef = []
        for m in ms:
            sel = [r for r in rows if r["dtype"] == dtype and r["m"] == m]
            a = np.stack([gemm_terms(np.array(m), r["n"], r["k"]) for r in sel])
            coef.append(nnls_relative(a, np.array([r["latency_s"] for r in sel])).tolist())
        out[dtype] = {"m": ms, "coef": coef}
    return out


def _coef_at(fit: dict[str, list], m: np.ndarray) -> np.ndarray:
    """Coefficients [..., 3] at row counts m, interpolated log-log between fitted m (a coefficient that
    grows like m, compute-bound, stays exact), held below the grid, and c_nk growing like m above it."""
    grid = np.log(np.array(fit["m"], dtype=float))
    table = np.log(np.maximum(np.array(fit["coef"]), 1e-30))  # [M, 3]; NNLS zeros stay negligible
    x = np.log(np.maximum(m, 1.0))
    out = np.exp(np.stack([np.interp(x, grid, table[:, j]) for j in range(3)], axis=-1))
    over = np.exp(np.maximum(x - grid[-1], 0.0))  # m / m_max above the grid, else 1
    out[..., 1] = out[..., 1] * over
    return out


def gemm_curves(rows: list[dict[str, Any]], fit: dict[str, dict[str, list]]) -> dict[str, dict[str, list[float]]]:
    """Measured / modelled time along each fitted (n, k, dtype) series: {key: {m, ratio}}."""
    curves: dict[str, dict[str, list[float]]] = {}
    for r in sorted(rows, key=lambda r: (r["dtype"], r["n"], r["k"], r["m"])):
        m = np.array(r["m"])
        model = float((gemm_terms(m, r["n"], r["k"]) * _coef_at(fit[r["dtype"]], m)).sum())
        c = curves.setdefault(f"{r['n']}x{r['k']}:{r['dtype']}", {"m": [], "ratio": []})
        c["m"].append(float(r["m"]))
        c["ratio"].append(r["latency_s"] / model)
    return curves


class GemmModel:
    """A silicon profile's GEMM fit: ``time(m [...], n, k, dtype)`` seconds (0 where m = 0)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def has_dtype(self, dtype: str) -> bool:
        return dtype in self.body["coef"]

    def time(self, m: np.ndarray, n: int, k: int, dtype: str, curve: bool = True) -> np.ndarray:
        m = np.asarray(m, dtype=float)
        mm = np.maximum(m, 1.0)
        t = (gemm_terms(mm, n, k) * _coef_at(self.body["coef"][dtype], mm)).sum(axis=-1)
        c = self.body["curves"].get(f"{n}x{k}:{dtype}") if curve else None
        if c is not None and len(c["m"]) >= 2:
            t = t * np.exp(np.interp(np.log(mm), np.log(c["m"]), np.log(c["ratio"])))
        return np.where(m > 0, t, 0.0)

    def held_out_errors(self) -> dict[str, dict[str, float]]:
        groups: dict[str, tuple[list[float], list[float]]] = {}
        for r in unpack_rows(self.body["rows_held_out"]):
            g = groups.setdefault(r["group"], ([], []))
            g[0].append(float(self.time(np.array(r["m"]), r["n"], r["k"], r["dtype"])))
            g[1].append(r["latency_s"])
        return {k: ape(np.array(v[0]), np.array(v[1])) for k, v in sorted(groups.items())}
