"""The Chrome / Perfetto trace of one iteration (open it in https://ui.perfetto.dev).

pid = node, tid = one thread per (GPU, micro-batch), named "GPU g" or "GPU g · mb m". Every stage of every
program is a complete ("X") event named after the stage; the time a GPU waited inside a stage (for its
resource, or for its partners before data could move) is its own slice, "waiting: <stage>". The largest
flows of every communication stage are flow events ("s" → "f") from the sender's slice to the receiver's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from moesim.engine.records import END, ENTER, START, SimRecords
from moesim.program import Comm, Program

US = 1e6


def _tid(gpu: int, m: int, mbs: int) -> int:
    return gpu * mbs + m


def _meta_events(gpus: int, gpn: int, mbs: int) -> list[dict[str, Any]]:
    ev: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": n, "args": {"name": f"node {n}"}}
                                for n in range(gpus // gpn)]
    for g in range(gpus):
        for m in range(mbs):
            name = f"GPU {g}" if mbs == 1 else f"GPU {g} · mb {m}"
            ev.append({"name": "thread_name", "ph": "M", "pid": g // gpn, "tid": _tid(g, m, mbs),
                       "args": {"name": name}})
            ev.append({"name": "thread_sort_index", "ph": "M", "pid": g // gpn, "tid": _tid(g, m, mbs),
                       "args": {"sort_index": _tid(g, m, mbs)}})
    return ev


def _stage_events(rec: SimRecords, programs: list[list[Program]], gpn: int) -> list[dict[str, Any]]:
    mbs, _, gpus, _, _ = rec.times.shape
    out = []
    for m, progs in enumerate(programs):
        for p, prog in enumerate(progs):
            args = {"layer": prog.layer, "block": prog.block, "pass": prog.pass_, "micro_batch": m}
            for s, name in enumerate(rec.names[p]):
                t = rec.times[m, p, :, s] * US
                for g in range(gpus):
                    enter, start, end = t[g]
                    base = {"pid": g // gpn, "tid": _tid(g, m, mbs), "args": args}
                    if start > enter:
                        out.append({"name": f"waiting: {name}", "cat": "waiting", "ph": "X", "ts": round(enter, 4),
                                    "dur": round(start - enter, 4), **base})
                    out.append({"name": name, "cat": rec.kinds[p][s], "ph": "X", "ts": round(start, 4),
                                "dur": round(end - start, 4), **base})
    return out


def _flow_events(rec: SimRecords, programs: list[list[Program]], gpn: int, budget: int) -> list[dict[str, Any]]:
    """Flow arrows for the largest flows of every communication stage, ``budget`` in all."""
    mbs = rec.times.shape[0]
    stages = [(m, p, s, st) for m, progs in enumerate(programs) for p, prog in enumerate(progs)
              for s, st in enumerate(prog.leaves) if isinstance(st, Comm) and st.flows.size]
    per = max(1, budget // max(len(stages), 1)) if budget > 0 else 0
    out, fid = [], 0
    for m, p, s, st in stages:
        f = st.flows
        t = rec.times[m, p, :, s] * US
        for i in np.argsort(-f.nbytes, kind="stable")[:per]:
            src, dst = int(f.src[i]), int(f.dst[i])
            common = {"name": st.name, "cat": "flow", "id": fid, "args": {"bytes": float(f.nbytes[i])}}
            out.append({**common, "ph": "s", "ts": round(max(t[src, START], t[src, ENTER]), 4),
                        "pid": src // gpn, "tid": _tid(src, m, mbs)})
            # "f" binds to the slice enclosing its time: the receiver's stage slice, mid-way
            out.append({**common, "ph": "f", "bp": "e", "ts": round((t[dst, START] + t[dst, END]) / 2, 4),
                        "pid": dst // gpn, "tid": _tid(dst, m, mbs)})
            fid += 1
    return out


def chrome_trace(rec: SimRecords, programs: list[list[Program]] | tuple, gpus_per_node: int,
                 max_flow_events: int = 4000) -> str:
    """Chrome trace-event JSON of the records (see the module docstring)."""
    mbs, _, gpus, _, _ = rec.times.shape
    events = (_meta_events(gpus, gpus_per_node, mbs) + _stage_events(rec, list(programs), gpus_per_node)
              + _flow_events(rec, list(programs), gpus_per_node, max_flow_events))
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms",
                       "otherData": {"flow_events_per_comm_stage_max": max_flow_events}}) + "\n"
