"""Records → summary: a pure function from engine timestamps and layer statistics to plain data.

Per-layer breakdown is read on the layer's critical GPU (the one that finished it last):
``time_s`` is the layer's share of the iteration (its last finish minus the previous layer's last finish);
``route_s`` and ``expert_s`` are that GPU's compute; ``dispatch_s`` and ``combine_s`` the time its own bytes
need at full link speed; ``waiting_s`` the rest of ``time_s`` (never below 0): time spent waiting for
other GPUs' data and for shared links.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moesim.build import LayerStats
from moesim.engine.records import COMBINED, COMPUTED, DISPATCHED, END, ROUTED, START, SimRecords
from moesim.routing.analysis import gini, max_vio


def _ratio(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    return float(np.max(x) / mean) if mean > 0 else 1.0


def layer_rows(records: SimRecords, stats: list[LayerStats], block_ids: tuple[int, ...]) -> list[dict[str, Any]]:
    """One dict per MoE layer (see module docstring for the time fields)."""
    rows, prev_end = [], 0.0
    for i, (st, t) in enumerate(zip(stats, records.times)):
        c = int(np.argmax(t[:, END]))
        end = float(t[c, END])
        route = float(t[c, ROUTED] - t[c, START] + t[c, END] - t[c, COMBINED])
        expert = float(t[c, COMPUTED] - t[c, DISPATCHED])
        dispatch = float(min(st.dispatch_xfer_s[c], t[c, DISPATCHED] - t[c, ROUTED]))
        combine = float(min(st.combine_xfer_s[c], t[c, COMBINED] - t[c, COMPUTED]))
        time_s = end - prev_end
        rows.append({
            "layer": i, "block": block_ids[i], "time_s": time_s, "route_s": route, "dispatch_s": dispatch,
            "expert_s": expert, "combine_s": combine,
            "waiting_s": max(0.0, time_s - route - dispatch - expert - combine), "critical_gpu": c,
            "gpu_load_max_over_mean": _ratio(st.gpu_tokens),
            "expert_load_max_over_mean": _ratio(st.expert_tokens),
            "intra_node_bytes": st.intra_node_bytes, "inter_node_bytes": st.inter_node_bytes,
            "dropped_tokens": st.dropped, "distinct_nodes_per_token": st.distinct_nodes_mean,
            "expert_gini": gini(st.expert_tokens), "expert_max_vio": max_vio(st.expert_tokens),
            "gpu_max_vio": max_vio(st.gpu_tokens),
            "tokens_by_distinct_devices": st.devices_hist.tolist(), "tokens_by_distinct_nodes": st.nodes_hist.tolist(),
            "inter_node_bytes_per_token": st.inter_node_bytes / max(float(st.nodes_hist.sum()), 1.0),
        })
        prev_end = end
    return rows


def gpu_rows(records: SimRecords, stats: list[LayerStats], gpus_per_node: int) -> list[dict[str, Any]]:
    """One dict per GPU, summed over layers."""
    t = records.times
    span = t[-1, :, END] if t.size else np.zeros(0)
    compute = (t[:, :, ROUTED] - t[:, :, START] + t[:, :, COMPUTED] - t[:, :, DISPATCHED]
               + t[:, :, END] - t[:, :, COMBINED]).sum(axis=0)
    dispatch = (t[:, :, DISPATCHED] - t[:, :, ROUTED]).sum(axis=0)
    combine = (t[:, :, COMBINED] - t[:, :, COMPUTED]).sum(axis=0)
    tokens = np.sum([s.gpu_tokens for s in stats], axis=0)
    sent = np.sum([s.sent_bytes for s in stats], axis=0)
    recv = np.sum([s.received_bytes for s in stats], axis=0)
    return [{"gpu": g, "node": g // gpus_per_node, "expert_tokens": float(tokens[g]),
             "compute_s": float(compute[g]), "dispatch_s": float(dispatch[g]), "combine_s": float(combine[g]),
             "busy_fraction": float(compute[g] / span[g]) if span[g] > 0 else 0.0,
             "sent_bytes": float(sent[g]), "received_bytes": float(recv[g])} for g in range(len(span))]


def summarize(records: SimRecords, stats: list[LayerStats], block_ids: tuple[int, ...], tokens: int,
              gpus_per_node: int) -> dict[str, Any]:
    """The result document (without scenario metadata): throughput, layers, gpus, totals."""
    it = records.iteration_time_s
    layers = layer_rows(records, stats, block_ids)
    loads = np.array([s.gpu_tokens for s in stats])
    totals = {
        "intra_node_bytes": float(sum(s.intra_node_bytes for s in stats)),
        "inter_node_bytes": float(sum(s.inter_node_bytes for s in stats)),
        "dropped_tokens": float(sum(s.dropped for s in stats)),
        "computed_copies": float(sum(s.copies for s in stats)),
        "gpu_load_max_over_mean": _ratio(loads.sum(axis=0)) if loads.size else 1.0,
        "mean_layer_gpu_load_max_over_mean": float(np.mean([r["gpu_load_max_over_mean"] for r in layers])),
    }
    for key in ("route_s", "dispatch_s", "expert_s", "combine_s", "waiting_s"):
        totals[key] = float(sum(r[key] for r in layers))
    return {
        "throughput_tokens_per_s": tokens / it if it > 0 else 0.0,
        "throughput_scope": "moe_layers",
        "iteration_time_s": it,
        "tokens_per_iteration": tokens,
        "layers": layers,
        "gpus": gpu_rows(records, stats, gpus_per_node),
        "totals": totals,
    }
