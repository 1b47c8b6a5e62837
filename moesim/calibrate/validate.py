"""``python -m moesim.calibrate.validate``: measure held-out MoE layers, compare with the simulator's predictions.

Held-out means not used for fitting: token counts off the grids, skewed router loads (a biased router and a
replayed Zipf trace), a model shape (H=768, I=384) that no grid contains, and a real expert-parallel layer
over 2 processes with all-to-all. Measurements are stored next to the profile
(``<profile>.validation.json``) so ``moesim validate --stored`` re-checks predictions without timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moesim.calibrate import pieces as P
from moesim.calibrate.distributed import run_job
from moesim.calibrate.hostalloc import keep_host_memory
from moesim.calibrate.run import PROFILE_DIR
from moesim.calibrate.timing import measure
from moesim.present.report_validation import write_report
from moesim.studies.validation import deepep_rows, predict_all, summarize_errors

ROUNDS = 3
LAYER_CASES = [
    # id, H, I, E, k, T, load: uniform | bias (router bias on 2 experts) | zipf (replayed trace, exponent 1.5)
    ("l1", 256, 512, 16, 4, 300, "uniform"),
    ("l2", 512, 256, 8, 2, 700, "bias"),
    ("l3", 512, 512, 32, 4, 1500, "zipf"),
    ("l4", 768, 384, 16, 2, 450, "bias"),  # shape not in any grid
    ("l5", 256, 256, 64, 8, 100, "uniform"),  # mostly one or two tokens per expert
    ("l6", 768, 384, 8, 2, 2500, "zipf"),
]
EP_CASES = [
    ("e1", {"tokens": 512, "hidden": 256, "inter": 512, "experts": 8, "top_k": 2, "skew": True}),
    ("e2", {"tokens": 1024, "hidden": 512, "inter": 256, "experts": 16, "top_k": 4, "skew": False}),
    ("e3", {"tokens": 300, "hidden": 768, "inter": 384, "experts": 8, "top_k": 2, "skew": True}),
]


def _ids_for(load: str, x, w, k: int, e: int, seed: int):
    """Router weights and ids for a case; 'zipf' replaces the router's choice by a replayed trace."""
    bias = None
    if load == "bias":
        bias = torch.zeros(e)
        bias[:2] = 0.25
    weights, ids = P.router(x, w, k, bias=bias)
    if load == "zipf":
        rng = np.random.default_rng(seed)
        p = np.arange(1, e + 1, dtype=float) ** -1.5
        p /= p.sum()
        ids = torch.from_numpy(np.stack([rng.choice(e, k, replace=False, p=p) for _ in range(x.shape[0])]))
    return weights, ids, bias


def measure_layer_case(case, threads: int) -> dict[str, Any]:
    cid, h, i, e, k, t, load = case
    g = torch.Generator().manual_seed(sum(map(ord, cid)))
    x, w = torch.randn(t, h, generator=g), torch.randn(e, h, generator=g)
    ws = P.expert_weights(e, h, i, torch.float32, seed=7)
    weights, ids, bias = _ids_for(load, x, w, k, e, seed=len(cid) + t)
    xs, order, counts = P.permute(x, ids, e)
    cl = counts.tolist()
    ys = P.experts_loop(xs, cl, *ws)

    def whole():
        wts, _ = P.router(x, w, k, bias=bias)
        a, o, c = P.permute(x, ids, e)
        return P.unpermute(P.experts_loop(a, c.tolist(), *ws), o, wts, t)

    fns = {"router": lambda: P.router(x, w, k, bias=bias), "permute": lambda: P.permute(x, ids, e),
           "experts": lambda: P.experts_loop(xs, cl, *ws), "unpermute": lambda: P.unpermute(ys, order, weights, t),
           "layer": whole}
    rounds: dict[str, list[dict[str, Any]]] = {p: [] for p in fns}
    with torch.inference_mode():
        for _ in range(ROUNDS):  # interleaved rounds: a slow spell of a shared machine hits every piece alike
            for piece, fn in fns.items():
                rounds[piece].append(measure(fn, "cpu", threads, 0.03))
    measured = {p: float(np.median([r["median_s"] for r in rs])) for p, rs in rounds.items()}
    return {"id": cid, "kind": "layer", "hidden": h, "inter": i, "experts": e, "top_k": k, "tokens": t,
            "load": load, "counts": cl, "measured": measured, "timing_rounds": rounds}


ATTN_CASES = [
    # id, phase, heads, head_dim, kv_heads, batch, seq/context: off the grid in batch, length or shape
    ("a1", "prefill", 8, 64, 8, 3, 512),      # batch 3: 1,536 tokens between grid points
    ("a2", "prefill", 12, 64, 12, 2, 384),    # 12 heads and length 384: in no grid
    ("a3", "prefill", 16, 128, 16, 1, 768),
    ("a4", "decode", 16, 64, 4, 4, 3000),     # context 3,000 between grid points
    ("a5", "decode", 16, 64, 4, 8, 1500),     # batch 8: in no grid
    ("a6", "decode", 32, 128, 8, 2, 1500),    # 32 heads: in no grid
]


def measure_attention_case(case, threads: int) -> dict[str, Any]:
    cid, phase, heads, d, kv, batch, length = case
    g = torch.Generator().manual_seed(sum(map(ord, cid)))
    if phase == "prefill":
        q, k, v = (torch.randn(batch, heads, length, d, generator=g) for _ in range(3))
        fn = lambda: P.attention_prefill(q, k, v)  # noqa: E731
    else:
        q = torch.randn(batch, heads, 1, d, generator=g)
        k, v = (torch.randn(batch, kv, length, d, generator=g) for _ in range(2))
        fn = lambda: P.attention_decode(q, k, v)  # noqa: E731
    with torch.inference_mode():
        rounds = [measure(fn, "cpu", threads, 0.03) for _ in range(ROUNDS)]
    return {"id": cid, "kind": "attention", "phase": phase, "heads": heads, "head_dim": d, "kv_heads": kv,
            "batch": batch, "length": length, "median_s": float(np.median([r["median_s"] for r in rounds])),
            "timing_rounds": rounds}


def drift_check(path: Path, threads: int) -> dict[str, Any]:
    """Re-time the profile's FP32 expert points of one shape now: median ratio now / at calibration.
    A diagnostic of how the (shared) machine's speed moved since calibration; predictions do not use it."""
    doc = json.loads(path.read_text())
    pts = [p for p in doc["pieces"]["expert"]["points"] if p["dtype"] == "float32" and p["hidden"] == 512
           and p["inter"] == 512 and p["tokens"] >= 16]
    ratios = []
    with torch.inference_mode():
        for p in pts:
            w1, w3, w2 = P.expert_weights(8, 512, 512, torch.float32)
            xs = torch.randn(p["tokens"], 512)
            state = {"i": 0}

            def call(xs=xs, n=p["tokens"], state=state, w1=w1, w3=w3, w2=w2):
                j = state["i"] = (state["i"] + 1) % 8
                return P.experts_loop(xs, [n], w1[j:j + 1], w3[j:j + 1], w2[j:j + 1])
            ratios.append(measure(call, "cpu", threads, 0.05)["median_s"] / p["median_s"])
    return {"points": len(ratios), "median_ratio_now_over_calibration": float(np.median(ratios)) if ratios else None}


def measure_ep_case(cid: str, spec: dict[str, Any], threads: int) -> dict[str, Any]:
    e = spec["experts"]
    bias = [1.5, 1.0] + [0.0] * (e - 2) if spec["skew"] else [0.0] * e
    res = run_job("ep_layer", {**spec, "seed": 11, "reps": 15, "threads": threads, "logit_bias": bias})
    return {"id": cid, "kind": "ep", **res}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m moesim.calibrate.validate", description=__doc__)
    ap.add_argument("--profile", default="cpu-ref", help="profile name in moesim/config/catalog/profiles or a path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", type=Path, default=None, help="report folder (default reports/validation-NAME)")
    ap.add_argument("--add-attention", action="store_true",
                    help="measure only the held-out attention cases and add them to the stored validation")
    a = ap.parse_args(argv)
    path = Path(a.profile) if a.profile.endswith(".json") else PROFILE_DIR / f"{a.profile}.json"
    allocator = keep_host_memory()
    if a.add_attention:
        out = path.with_name(path.stem + ".validation.json")
        stored = json.loads(out.read_text())
        stored["cases"] = [c for c in stored["cases"] if c["kind"] != "attention"]
        stored["cases"] += [measure_attention_case(c, a.threads) for c in ATTN_CASES]
        stored["attention_command"] = "python -m moesim.calibrate.validate " + " ".join(argv)
        stored["attention_date_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        print(f"added {len(ATTN_CASES)} attention cases to {out}")
        return 0
    t0 = time.perf_counter()
    cases = []
    for case in LAYER_CASES:
        cases.append(measure_layer_case(case, a.threads))
        print(f"[{time.perf_counter() - t0:6.1f} s] layer case {case[0]}", flush=True)
    for cid, spec in EP_CASES:
        cases.append(measure_ep_case(cid, spec, a.threads))
        print(f"[{time.perf_counter() - t0:6.1f} s] EP case {cid}", flush=True)
    drift = drift_check(path, a.threads)
    print(f"machine speed drift since calibration (expert GEMM time now / then): "
          f"{drift['median_ratio_now_over_calibration']:.3f}", flush=True)
    stored = {"profile": path.stem, "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "threads": a.threads, "torch": torch.__version__, "host_allocator": allocator, "drift": drift,
              "command": "python -m moesim.calibrate.validate " +
              " ".join(argv), "cases": cases}
    out = path.with_name(path.stem + ".validation.json")
    out.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    rows = predict_all(str(path), stored)
    report = a.report or Path("reports") / f"validation-{path.stem}"
    write_report(report, path.stem, rows, summarize_errors(rows), deepep_rows(), stored["command"],
                 drift["median_ratio_now_over_calibration"])
    print(f"wrote {out} and {report}/ in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
