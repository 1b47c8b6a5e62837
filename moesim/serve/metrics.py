"""Serving records → summary: latency percentiles, throughput per GPU and node, goodput at the SLO, and
queue / batch / KV use over time. Pure: arrays in, plain data out.

TTFT: arrival → first token (end of the prefill). TPOT: (last token − first token) / (output tokens − 1),
the mean time per output token after the first (vLLM's and AIConfigurator's definition); requests with
one output token have none. End-to-end: arrival → last token.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moesim.config.serving import SloSpec
from moesim.serve.sim import ServeSim

PCTS = (50, 90, 99)


def _pcts(x: np.ndarray) -> dict[str, float | None]:
    x = x[np.isfinite(x)]
    if not x.size:
        return {"mean": None, **{f"p{p}": None for p in PCTS}}
    return {"mean": float(x.mean()), **{f"p{p}": float(np.percentile(x, p)) for p in PCTS}}


def request_table(sim: ServeSim) -> dict[str, np.ndarray]:
    """Per-request columns [R]: arrival, lengths, TTFT, TPOT, end-to-end, preemptions, KV transfer seconds."""
    s = sim.state
    ttft = s.t_first - s.arrival
    multi = s.osl > 1
    tpot = np.where(multi, (s.t_done - s.t_first) / np.maximum(s.osl - 1, 1), np.nan)
    return {"arrival_s": s.arrival, "input_tokens": s.isl, "output_tokens": s.osl, "ttft_s": ttft,
            "tpot_s": tpot, "e2e_s": s.t_done - s.arrival, "preemptions": s.preemptions,
            "kv_transfer_s": s.transfer_s}


def summarize(sim: ServeSim, t: dict[str, np.ndarray], tl: dict[str, np.ndarray], slo: SloSpec,
              gpus_per_node: int) -> dict[str, Any]:
    """The serving summary document (JSON-ready) from the request table and timeline of ``sim``."""
    n = len(t["arrival_s"])
    done = float(np.nanmax(sim.state.t_done)) if n else 0.0
    span = max(done - (float(t["arrival_s"][0]) if n else 0.0), 1e-12)
    out_tok, in_tok = float(t["output_tokens"].sum()), float(t["input_tokens"].sum())
    tpot_ok = np.where(np.isnan(t["tpot_s"]), True, t["tpot_s"] <= slo.tpot_s)
    good = (t["ttft_s"] <= slo.ttft_s) & tpot_ok
    gpus = sim.deployment.world_gpus
    used = sum(r.instances * r.gpus_per_instance for r in sim.deployment.roles)
    p = slo.percentile
    ttft_p = float(np.percentile(t["ttft_s"], p)) if n else 0.0
    multi = t["tpot_s"][np.isfinite(t["tpot_s"])]
    tpot_p = float(np.percentile(multi, p)) if multi.size else 0.0
    out_tps = out_tok / span
    return {
        "requests": n, "duration_s": span,
        "ttft_s": _pcts(t["ttft_s"]), "tpot_s": _pcts(t["tpot_s"]), "e2e_s": _pcts(t["e2e_s"]),
        "throughput": {"requests_per_s": n / span, "output_tokens_per_s": out_tps,
                       "total_tokens_per_s": (out_tok + in_tok) / span,
                       "output_tokens_per_s_per_gpu": out_tps / used,
                       "output_tokens_per_s_per_node": out_tps / max(1, used / gpus_per_node),
                       "gpus": used, "cluster_gpus": gpus},
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "percentile": p,
                f"ttft_p{p}_s": ttft_p, f"tpot_p{p}_s": tpot_p,
                "met": bool(ttft_p <= slo.ttft_s and tpot_p <= slo.tpot_s),
                "attainment": float(good.mean()) if n else 0.0,
                "goodput_requests_per_s": float(good.sum()) / span,
                "goodput_output_tokens_per_s": float(t["output_tokens"][good].sum()) / span},
        "preemptions": int(t["preemptions"].sum()),
        "kv_transfer_s": _pcts(np.where(t["kv_transfer_s"] > 0, t["kv_transfer_s"], np.nan)),
        "instances": _instance_stats(sim, tl),
    }


KINDS = np.array(["prefill", "decode", "mixed"], dtype=object)  # the iteration log's kind codes


def timeline(sim: ServeSim) -> dict[str, np.ndarray]:
    """Iteration log as columns [N]: start_s, seconds, role, instance, kind (prefill|decode|mixed), tokens per
    GPU, context, running, waiting, kv_used_tokens, kv_utilisation."""
    rows = np.array(sim.log.rows, dtype=float).reshape(-1, 10)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]  # a decode span logs its steps when it starts
    names = [r.name for r in sim.deployment.roles]
    caps = np.array([r.kv_tokens for r in sim.deployment.roles])
    role = rows[:, 2].astype(int)
    cap = caps[role] if rows.size else np.zeros(0)
    return {"start_s": rows[:, 0], "seconds": rows[:, 1], "role": np.array(names, dtype=object)[role],
            "instance": rows[:, 3].astype(int), "kind": KINDS[rows[:, 4].astype(int)],
            "tokens_per_gpu": rows[:, 5], "context": rows[:, 6], "running": rows[:, 7].astype(int),
            "waiting": rows[:, 8].astype(int), "kv_used_tokens": rows[:, 9],
            "kv_utilisation": np.where(np.isfinite(cap), rows[:, 9] / np.where(np.isfinite(cap), cap, 1), 0.0)}


def _instance_stats(sim: ServeSim, tl: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for role in sim.deployment.roles:
        sel = tl["role"] == role.name
        busy = float(tl["seconds"][sel].sum())
        dec = sel & (tl["kind"] != "prefill")
        kinds, tokens, ctx, secs = (tl[c][sel] for c in ("kind", "tokens_per_gpu", "context", "seconds"))
        imb = np.zeros(secs.size)
        for kind in ("prefill", "decode", "mixed"):  # the surface's GPU load max/mean at each iteration
            k = kinds == kind
            if k.any():
                surf = sim.surfaces[(role.name, "prefill" if kind == "mixed" else kind)]
                imb[k] = surf.imbalances(tokens[k], ctx[k]) * secs[k]
        imb = imb.tolist()  # summed in log order below, one float at a time
        out.append({"role": role.name, "instances": role.instances, "gpus_per_instance": role.gpus_per_instance,
                    "kv_tokens_per_instance": role.kv_tokens if np.isfinite(role.kv_tokens) else None,
                    "max_running_per_instance": role.max_running, "iterations": int(sel.sum()),
                    # GPU load max/mean of the iterations run (from the surfaces), weighted by their time
                    "gpu_load_max_over_mean": float(sum(imb) / busy) if busy else None,
                    "busy_s_per_instance": busy / role.instances,
                    "mean_decode_batch": float(tl["running"][dec].mean()) if dec.any() else 0.0,
                    "max_waiting": int(tl["waiting"][sel].max()) if sel.any() else 0,
                    "mean_kv_utilisation": float(tl["kv_utilisation"][sel].mean()) if sel.any() else 0.0,
                    "max_kv_utilisation": float(tl["kv_utilisation"][sel].max()) if sel.any() else 0.0})
    return out
