"""A pipelined run as text (``moesim run`` of a scenario with ``workload.pipeline_stages``) and its schedule
as a Chrome trace (one track per stage: forward and backward passes, and the hand-overs)."""

from __future__ import annotations

import json
from typing import Any


def table(doc: dict[str, Any]) -> str:
    """The schedule's figures and per-stage times, in a reader's units."""
    pp = doc["pipeline"]
    mem = doc["memory_per_gpu"]
    lines = [f"{doc['scenario']}: {doc['model']} on {doc['nodes']} x {doc['gpus_per_node']} {doc['gpu']}, "
             f"{pp['stages']} pipeline stages of {pp['gpus_per_stage']} GPUs, {doc['mode']}",
             f"{pp['micro_batches']} micro-batches of {doc['tokens_per_gpu']} tokens per GPU, {pp['schedule']} "
             f"schedule; scope {doc['scope']}", "",
             f"time: {doc['time_s'] * 1e3:,.3f} ms (schedule {pp['schedule_s'] * 1e3:,.3f} ms + gradient sync "
             f"{pp['gradient_sync_s'] * 1e3:,.3f} ms)",
             f"throughput: {doc['throughput_tokens_per_s']:,.0f} tokens/s "
             f"({doc['throughput_tokens_per_s_per_gpu']:,.1f} per GPU)",
             f"bubble: {pp['bubble_fraction']:.1%} of the stages' time idle (equal stages, free transfers: "
             f"{pp['bubble_fraction_equal_stages']:.1%})",
             f"hand-overs: {pp['activation_bytes_per_gpu'] / 2**20:,.2f} MiB per GPU, {pp['transfer_s']['count']} "
             f"transfers, mean {pp['transfer_s']['mean'] * 1e3:.3f} ms, max {pp['transfer_s']['max'] * 1e3:.3f} ms"]
    if mem.get("known"):
        lines.append(f"memory per GPU: {mem['total_bytes'] / 2**30:,.1f} GiB of {mem['capacity_bytes'] / 2**30:,.1f} "
                     f"({'fits' if mem['fits'] else 'does NOT fit'})")
    lines += ["", "  stage  blocks  forward ms  backward ms  busy ms"]
    bwd = pp["backward_s_per_micro_batch"] or [None] * pp["stages"]
    for k, (n, f, b, busy) in enumerate(zip(pp["blocks_per_stage"], pp["forward_s_per_micro_batch"], bwd,
                                            pp["busy_s_per_stage"], strict=True)):
        bs = f"{b * 1e3:11.3f}" if b is not None else f"{'-':>11}"
        lines.append(f"  {k:5d}  {n:6d}  {f * 1e3:10.3f}  {bs}  {busy * 1e3:7.2f}")
    return "\n".join(lines) + "\n"


def chrome_trace(timeline) -> str:
    """The schedule as Chrome trace events (µs): process 0, one thread per stage."""
    ev = []
    for k, row in enumerate(timeline.passes):
        ev.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": k, "args": {"name": f"stage {k}"}})
        ev += [{"name": f"{kind}{mb}", "cat": kind, "ph": "X", "pid": 0, "tid": k, "ts": s * 1e6,
                "dur": (e - s) * 1e6} for kind, mb, s, e in row]
    ev += [{"name": f"send mb{mb} {a}->{b}", "cat": "transfer", "ph": "X", "pid": 1, "tid": min(a, b),
            "ts": s * 1e6, "dur": (e - s) * 1e6} for a, b, mb, s, e in timeline.transfers]
    return json.dumps({"traceEvents": ev, "displayTimeUnit": "ms"})
