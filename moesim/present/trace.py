"""The Chrome / Perfetto trace of one iteration (open it in https://ui.perfetto.dev).

- pid = node; one track per (GPU, micro-batch) named "GPU g" or "GPU g · mb m". Stages that run side by
  side on one GPU (parallel branches) go to extra tracks of that GPU, "GPU g · overlap k", so that slices
  on a track never overlap (times are whole nanoseconds, start and end rounded once each).
- Every stage of every program is a complete ("X") slice named after the stage; the time a GPU waited
  inside a stage (for its resource, or for its partners before data could move) is its own slice,
  "waiting: <stage>", just before it.
- The largest flows of every communication stage are flow arrows ("s" → "f") from the sender's slice to
  the receiver's; with the topology, each link kind's mean utilisation and the busiest links' own are
  counters ("C") on a "links" process (a stage's bytes on a link spread evenly over the stage's window).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from moesim.engine.records import END, ENTER, START, SimRecords
from moesim.ir.program import Comm, Parallel, Program

LANES = 64  # tracks per (GPU, micro-batch): lane 0 is the GPU's own, more for stages side by side
KIND_NAMES = {0: "NVLink", 1: "NIC", 2: "spine", 3: "host link", 4: "DRAM", 5: "NVMe"}


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _us(ns: int) -> float:
    return ns / 1000.0


def predecessors(stages: tuple) -> list[list[int]]:
    """For each leaf stage (in ``leaves`` order), the leaves it follows in the program: the previous stage
    of its sequence, every branch's last stage after a Parallel, nothing for the first stage."""
    preds: list[list[int]] = []

    def walk(seq: tuple, before: list[int]) -> list[int]:
        for st in seq:
            if isinstance(st, Parallel):
                ends: list[int] = []
                for branch in st.branches:
                    ends += walk(branch, before)
                before = ends or before
            else:
                preds.append(before)
                before = [len(preds) - 1]
        return before

    walk(stages, [])
    return preds


def effective_times(rec: SimRecords, programs: list[list[Program]]) -> np.ndarray:
    """times [M, P, G, S, 3] with each stage's enter no earlier than the end of the stages it follows on the
    same GPU: a stage cannot wait before its inputs exist (the lockstep engine records a phase's stages as
    entered together), so only waiting for a resource or for partners remains."""
    t = rec.times.copy()
    for m, progs in enumerate(programs):
        for p, prog in enumerate(progs):
            for s, before in enumerate(predecessors(prog.stages)):
                if before:
                    ready = np.nanmax(t[m, p, :, before, END], axis=0)
                    t[m, p, :, s, ENTER] = np.fmin(np.fmax(t[m, p, :, s, ENTER], ready), t[m, p, :, s, START])
    return t


def _tracks(rec: SimRecords) -> dict[tuple[int, int, int, int], int]:
    """(micro-batch, program, GPU, stage) → lane: greedy interval colouring of [enter, end] per GPU."""
    mbs, progs, gpus, stages, _ = rec.times.shape
    lanes: dict[tuple[int, int, int, int], int] = {}
    for m in range(mbs):
        for g in range(gpus):
            spans = [(_ns(rec.times[m, p, g, s, ENTER]), _ns(rec.times[m, p, g, s, END]), p, s)
                     for p in range(progs) for s in range(len(rec.names[p]))
                     if not np.isnan(rec.times[m, p, g, s, END])]
            last: list[int] = []  # end of the latest slice on each lane
            for enter, end, p, s in sorted(spans):
                lane = next((i for i, e in enumerate(last) if e <= enter), len(last))
                if lane == len(last):
                    last.append(end)
                last[lane] = max(end, last[lane])
                lanes[(m, p, g, s)] = min(lane, LANES - 1)
    return lanes


def _tid(gpu: int, m: int, mbs: int, lane: int = 0) -> int:
    return (gpu * mbs + m) * LANES + lane


def _meta_events(gpus: int, gpn: int, mbs: int, lanes: dict) -> list[dict[str, Any]]:
    ev: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": n, "args": {"name": f"node {n}"}}
                                for n in range(gpus // gpn)]
    used = {(g, m, lane) for (m, _, g, _), lane in lanes.items()} | {(g, m, 0) for g in range(gpus)
                                                                     for m in range(mbs)}
    for g, m, lane in sorted(used):
        name = (f"GPU {g}" if mbs == 1 else f"GPU {g} · mb {m}") + (f" · overlap {lane}" if lane else "")
        tid = _tid(g, m, mbs, lane)
        ev.append({"name": "thread_name", "ph": "M", "pid": g // gpn, "tid": tid, "args": {"name": name}})
        ev.append({"name": "thread_sort_index", "ph": "M", "pid": g // gpn, "tid": tid, "args": {"sort_index": tid}})
    return ev


def _stage_events(rec: SimRecords, programs: list[list[Program]], gpn: int, lanes: dict) -> list[dict[str, Any]]:
    mbs, _, gpus, _, _ = rec.times.shape
    out = []
    for m, progs in enumerate(programs):
        for p, prog in enumerate(progs):
            args = {"layer": prog.layer, "block": prog.block, "pass": prog.pass_, "micro_batch": m}
            for s, name in enumerate(rec.names[p]):
                for g in range(gpus):
                    if (m, p, g, s) not in lanes:
                        continue
                    enter, start, end = (_ns(x) for x in rec.times[m, p, g, s])
                    base = {"pid": g // gpn, "tid": _tid(g, m, mbs, lanes[(m, p, g, s)]), "args": args}
                    if start > enter:
                        out.append({"name": f"waiting: {name}", "cat": "waiting", "ph": "X", "ts": _us(enter),
                                    "dur": _us(start - enter), **base})
                    out.append({"name": name, "cat": rec.kinds[p][s], "ph": "X", "ts": _us(start),
                                "dur": _us(max(end - start, 0)), **base})
    return out


def _comm_stages(programs: list[list[Program]]):
    return [(m, p, s, st) for m, progs in enumerate(programs) for p, prog in enumerate(progs)
            for s, st in enumerate(prog.leaves) if isinstance(st, Comm) and st.flows.size]


def _flow_events(rec: SimRecords, programs: list[list[Program]], gpn: int, budget: int,
                 lanes: dict) -> list[dict[str, Any]]:
    """Flow arrows for the largest fabric flows of every communication stage, ``budget`` in all."""
    mbs = rec.times.shape[0]
    stages = _comm_stages(programs)
    per = max(1, budget // max(len(stages), 1)) if budget > 0 else 0
    out, fid = [], 0
    for m, p, s, st in stages:
        f = st.flows
        fabric = np.flatnonzero(f.src != f.dst) if f.tier is None else np.flatnonzero((f.tier == 0) & (f.src != f.dst))
        for i in fabric[np.argsort(-f.nbytes[fabric], kind="stable")][:per]:
            src, dst = int(f.src[i]), int(f.dst[i])
            if (m, p, src, s) not in lanes or (m, p, dst, s) not in lanes:
                continue
            s_start, s_end = _ns(rec.times[m, p, src, s, START]), _ns(rec.times[m, p, src, s, END])
            d_start, d_end = _ns(rec.times[m, p, dst, s, START]), _ns(rec.times[m, p, dst, s, END])
            ends = _flow_ends(s_start, s_end, d_start, d_end)
            if ends is None:
                continue
            common = {"name": st.name, "cat": "flow", "id": fid, "args": {"bytes": float(f.nbytes[i])}}
            out.append({**common, "ph": "s", "ts": _us(ends[0]), "pid": src // gpn,
                        "tid": _tid(src, m, mbs, lanes[(m, p, src, s)])})
            out.append({**common, "ph": "f", "bp": "e", "ts": _us(ends[1]), "pid": dst // gpn,
                        "tid": _tid(dst, m, mbs, lanes[(m, p, dst, s)])})
            fid += 1
    return out


def _flow_ends(s_start: int, s_end: int, d_start: int, d_end: int) -> tuple[int, int] | None:
    """(start, end) ns of a flow arrow: it leaves when the sender's slice starts and lands at the earliest
    time inside the receiver's slice that is not before that (Perfetto binds each end to the slice enclosing
    its time, and drops or reverses an arrow that ends before it starts). None where the receiver's slice
    ends before the sender's starts (no arrow can join them)."""
    if d_end < s_start:
        return None
    return s_start, min(max(d_start, s_start), d_end)


def _counter_events(rec: SimRecords, programs: list[list[Program]], topo, top: int = 16) -> list[dict[str, Any]]:
    """Link utilisation counters: per link kind the mean over its links, and the ``top`` busiest links."""
    pid = topo.nodes + 1
    cap = np.asarray(topo.capacity_Bps, dtype=float)
    steps: dict[int, np.ndarray] = {}  # time (ns) → change of bytes/s per link
    for m, p, s, st in _comm_stages(programs):
        t = rec.times[m, p, :, s]
        lo, hi = _ns(np.nanmin(t[:, START])), _ns(np.nanmax(t[:, END]))
        if hi <= lo:
            continue
        paths = topo.flow_paths(st.flows)
        load = np.zeros(cap.size)
        for col in range(paths.shape[1]):
            ok = paths[:, col] >= 0
            np.add.at(load, paths[ok, col], st.flows.nbytes[ok])
        rate = load / ((hi - lo) * 1e-9)
        steps.setdefault(lo, np.zeros(cap.size))[:] += rate
        steps.setdefault(hi, np.zeros(cap.size))[:] -= rate
    if not steps:
        return []
    times = sorted(steps)
    level = np.cumsum([steps[x] for x in times], axis=0).clip(min=0)  # [T, L] bytes/s after each change
    util = level / np.where(cap > 0, cap, np.inf)
    busiest = np.argsort(-(util.max(axis=0)), kind="stable")[:top]
    out: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": pid, "args": {"name": "links"}}]
    kinds = np.asarray(topo.link_kind)
    for i, x in enumerate(times):
        per_kind = {f"{KIND_NAMES.get(int(k), k)} mean utilisation": float(util[i, kinds == k].mean())
                    for k in np.unique(kinds[util.max(axis=0) > 0])}
        out.append({"name": "link utilisation by kind", "ph": "C", "pid": pid, "ts": _us(x), "args": per_kind})
        out.append({"name": "busiest links", "ph": "C", "pid": pid, "ts": _us(x),
                    "args": {f"link {int(j)} ({KIND_NAMES.get(int(kinds[j]), '?')})": float(util[i, j])
                             for j in busiest}})
    return out


def chrome_trace(rec: SimRecords, programs: list[list[Program]] | tuple, gpus_per_node: int,
                 max_flow_events: int = 4000, topology=None) -> str:
    """Chrome trace-event JSON of the records (see the module docstring)."""
    mbs, _, gpus, _, _ = rec.times.shape
    progs = list(programs)
    rec = SimRecords(effective_times(rec, progs), rec.names, rec.kinds, rec.network_recomputes, rec.engine,
                     rec.interleaved_phases)
    lanes = _tracks(rec)
    events = (_meta_events(gpus, gpus_per_node, mbs, lanes) + _stage_events(rec, progs, gpus_per_node, lanes)
              + _flow_events(rec, progs, gpus_per_node, max_flow_events, lanes))
    if topology is not None:
        events += _counter_events(rec, progs, topology)
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms",
                       "otherData": {"flow_events_per_comm_stage_max": max_flow_events,
                                     "time_resolution": "1 ns"}}) + "\n"
