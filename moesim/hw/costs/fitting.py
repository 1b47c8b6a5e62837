"""Fitting helpers shared by the measured and silicon cost models: non-negative least squares on relative
error, error summaries in percent, and the packed row tables profiles store."""

from __future__ import annotations

from typing import Any

import numpy as np


def nnls_relative(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients c ≥ 0 [T] minimising Σ((a·c − y)/y)² for regressors a [N, T] and times y [N] (s):
    ``scipy.optimize.nnls`` (Lawson–Hanson active set, the exact optimum) on rows scaled by 1/y."""
    from scipy.optimize import nnls  # only when fitting: scipy.optimize costs 0.4 s to import, runs never fit

    w = 1.0 / y
    coef, _ = nnls(a * w[:, None], y * w)
    return coef


def ape(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    """n, MAPE, P90 and max absolute percentage error, and the signed mean (bias), in percent."""
    if meas.size == 0:
        return {"n": 0}
    err = 100.0 * (pred - meas) / meas
    return {"n": int(meas.size), "mape": float(np.mean(np.abs(err))), "p90": float(np.percentile(np.abs(err), 90)),
            "max": float(np.max(np.abs(err))), "bias": float(np.mean(err))}


ROW_KEYS = ("hidden", "inter", "top_k", "experts", "dtype", "tokens", "distribution", "latency_s", "group")


def pack_rows(rows: list[dict[str, Any]], order: tuple[str, ...] = ROW_KEYS) -> dict[str, Any]:
    """Rows as columns and value lists, text columns as codes into ``levels`` (a sixth of the JSON of a
    list of dicts)."""
    keys = [k for k in order if rows and k in rows[0]]
    levels = {k: sorted({r[k] for r in rows}) for k in keys if isinstance(rows[0][k], str)}
    code = {k: {v: i for i, v in enumerate(lv)} for k, lv in levels.items()}
    return {"columns": keys, "levels": levels,
            "rows": [[code[k][r[k]] if k in code else r[k] for k in keys] for r in rows]}


def unpack_rows(packed: dict[str, Any]) -> list[dict[str, Any]]:
    keys, levels = packed["columns"], packed.get("levels", {})
    return [{k: levels[k][x] if k in levels else x for k, x in zip(keys, v)} for v in packed["rows"]]
