"""DeepEP rows of aiconfigurator's perf database (``wideep_deepep_*_perf``) and what ``import_aic`` fits on
them: the NVLink rate DeepEP's kernels reach, their start-ups, and the series a GPU cannot have measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moesim.calibrate.aic_records import records as _records
from moesim.hw.costs.silicon import WEIGHT_BYTES, shape_key

DEEPEP_TABLES = {"normal": "wideep_deepep_normal_perf", "low_latency": "wideep_deepep_ll_perf"}


def read_deepep_rows(root: Path, system: str, version: str, hidden: int = 7168, top_k: int = 8,
                     experts: int = 256, sms: int = 24) -> tuple[list[dict[str, Any]], str | None]:
    """DeepEP kernel times on one node (aiconfigurator's SGLang wide-EP tables): rows for one model shape
    (DeepSeek-V3 by default) and the normal kernels' default 24 SMs, token counts up to 16,384 per GPU.
    All held out: they validate the simulated all-to-all, nothing is fitted to them. Returns (rows, path)."""
    rows, used = [], None
    for mode, table in DEEPEP_TABLES.items():
        folder = root / system / "comm" / "sglang" / version
        path = next((folder / f"{table}{ext}" for ext in (".parquet", ".csv") if (folder / f"{table}{ext}").is_file()),
                    None)
        if path is None:
            continue
        used = str(path.relative_to(root).parent)
        for r in _records(path):
            if (int(r["hidden_size"]), int(r["num_topk"]), int(r["num_experts"])) != (hidden, top_k, experts) \
                    or int(r["num_token"]) > 16384 or int(r["node_num"]) != 1:
                continue
            if mode == "normal" and int(r["dispatch_sms"]) != sms:
                continue
            d, c = ("dispatch_transmit_us", "combine_transmit_us") if mode == "normal" else \
                ("dispatch_avg_t_us", "combine_avg_t_us")
            rows.append({"mode": mode, "tokens": int(r["num_token"]), "hidden": hidden, "top_k": top_k,
                         "experts": experts, "gpus": 8, "dispatch_s": float(r[d]) * 1e-6,
                         "combine_s": float(r[c]) * 1e-6})
    return sorted(rows, key=lambda r: (r["mode"], r["tokens"])), used


def nvlink_copies_per_token(gpus: int, experts: int, top_k: int) -> float:
    """Expected GPUs other than its own that a uniformly routed token reaches (hierarchical, one node):
    (G − 1)·(1 − P(a GPU holds none of the k)), P = Π_j (E − E/G − j)/(E − j)."""
    p_none = 1.0
    for j in range(top_k):
        p_none *= (experts - experts / gpus - j) / (experts - j)
    return (gpus - 1) * (1.0 - p_none)


def fit_nvlink(rows: list[dict[str, Any]], latency_s: float) -> tuple[float, list[dict[str, Any]]]:
    """Achievable NVLink bandwidth (bytes/s) of DeepEP's normal kernels on one node: least squares on
    relative error of t = start-up + bytes / bw over the normal rows with ≥ 512 tokens at even positions
    (the start-up as the engine charges it: 2 latencies for dispatch, with its layout exchange; 1 for
    combine). Returns bw and the rows marked ``fitted`` (True for the rows used)."""
    from moesim.model.moe import copy_bytes
    big = [r for r in rows if r["mode"] == "normal" and r["tokens"] >= 512]
    fit_ids = {id(r) for r in big[0::2]}
    num = den = 0.0
    for r in big[0::2]:
        copies = r["tokens"] * nvlink_copies_per_token(r["gpus"], r["experts"], r["top_k"])
        for kernel, dtype, lat in (("dispatch", "fp8", 2 * latency_s), ("combine", "bf16", latency_s)):
            t, b = r[f"{kernel}_s"], copies * copy_bytes(r["hidden"], dtype)
            num += (b / t) * (t - lat) / t
            den += (b / t) ** 2
    return den / num, [{**r, "fitted": id(r) in fit_ids} for r in rows]


def fit_startups(rows: list[dict[str, Any]], bw: float, path_s: float = 0.0
                 ) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
    """Start-up of each DeepEP kernel (seconds), per moesim algorithm: the median of t − bytes / bw − path_s
    (the link latency the engine adds to every flow) over the rows with ≤ 8 tokens at even positions (1 and
    4 tokens), where the transfer is a few percent of the time.
    Returns {algorithm: [dispatch, combine]} and the rows with those ones marked ``fitted`` too."""
    from moesim.model.moe import copy_bytes
    out, marked = {}, [dict(r) for r in rows]
    for mode, algorithm in (("normal", "hierarchical"), ("low_latency", "low_latency")):
        small = [r for r in marked if r["mode"] == mode and r["tokens"] <= 8][0::2]
        if not small:
            continue
        per = []
        for kernel, dtype in (("dispatch", "fp8"), ("combine", "bf16")):
            vals = []
            for r in small:
                g, k = r["gpus"], r["top_k"]
                copies = nvlink_copies_per_token(g, r["experts"], k) if mode == "normal" else k * (g - 1) / g
                vals.append(r[f"{kernel}_s"] - r["tokens"] * copies * copy_bytes(r["hidden"], dtype) / bw - path_s)
            per.append(max(float(np.median(vals)), 0.0))
        for r in small:
            r["fitted"] = True
        out[algorithm] = per
    return out, marked


def impossible_series(rows: list[dict[str, Any]], hbm_Bps: float) -> dict[str, str]:
    """Series whose balanced rows imply weight streaming faster than the HBM datasheet peak."""
    from moesim.hw.costs.silicon import balanced_counts
    bad = {}
    for r in rows:
        if r["distribution"] != "balanced" or shape_key(r) in bad:
            continue
        active = int((balanced_counts(r["tokens"], r["experts"], r["top_k"]) > 0).sum())
        rate = active * 3 * r["hidden"] * r["inter"] * WEIGHT_BYTES[r["dtype"]] / r["latency_s"]
        if rate > hbm_Bps:
            bad[shape_key(r)] = (f"{r['tokens']} tokens in {r['latency_s'] * 1e3:.3f} ms stream {active} experts' "
                                 f"weights at {rate / 1e12:.2f} TB/s, above the {hbm_Bps / 1e12:.2f} TB/s HBM peak")
    return bad
