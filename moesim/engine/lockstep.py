"""The scalable engine: every GPU's walk through one micro-batch's programs, evaluated phase by phase on
arrays [G] instead of one SimPy process per GPU.

It runs the drain network's model (``drain.py``): a link drains the flows released onto it first come,
first served, a flow is done when the last link of its path has drained it (plus the path's latency), a
GPU leaves a communication stage when every flow it waits for is done, and no sooner than its start-up
latency after it joined. Compute stages are back to back, as in the interpreter when nothing shares a GPU.

What differs from the interpreter: links serve the phases in program order. A flow of phase p + 1 released
before the last flow of phase p on a link is served after it here, before it in the interpreter. When no
phase's first release comes before the previous phase's last one (every dense all-to-all: each GPU waits
for flows from every other), the two are the same model and differ only in floating-point rounding
(``tests/test_lockstep.py``); otherwise the phases that overlapped are counted (``interleaved_phases``)
and the difference is measured in docs/performance.md. Inside a phase the order is exact: releases behind
arrival gates (chunked forwarding) are resolved in time order, in as few vectorised passes as their
dependencies allow.
"""

from __future__ import annotations

import numpy as np

from moesim.engine.drain import drain_batches
from moesim.engine.drain_jit import maximum_at
from moesim.engine.gates import GateLayout, open_times
from moesim.engine.records import SimRecords
from moesim.hw.topology import Topology
from moesim.ir.program import Comm, Parallel, Program


def supports(programs: list[list[Program]]) -> bool:
    """Whether ``simulate_lockstep`` can run these programs: one micro-batch and no parallel branches (each
    GPU walks its stages one at a time, so nothing shares its SMs)."""
    return len(programs) == 1 and not any(isinstance(st, Parallel) for p in programs[0] for st in p.stages)


def simulate_lockstep(programs: list[list[Program]], topo: Topology, shared_records: bool) -> tuple[SimRecords, int]:
    """Run one micro-batch's programs on the drain network. Returns the records, as the interpreter writes
    them (``shared_records``: the interpreter queued compute for the GPU's resources, because some
    communication holds SMs: a run of stages is then entered when it starts and timed stage after stage),
    and the number of phases whose first release came before the previous phase's last one."""
    progs = programs[0]
    g = topo.num_gpus
    width = max((len(p.leaves) for p in progs), default=0)
    times = np.full((1, len(progs), g, width, 3), np.nan)
    t = np.zeros(g)
    link_free = np.zeros(topo.capacity_Bps.size)
    last_release, interleaved = -np.inf, 0
    for p, prog in enumerate(progs):
        rec = times[0, p]
        for op in stage_ops(prog):
            if op[0] == "c":
                t = _run(rec, op[1], op[2], t, shared_records)
                continue
            s, st = op[1], op[2]
            leave, ready, first, last = comm_phase(st, t, topo, link_free)
            rec[:, s, 0], rec[:, s, 1], rec[:, s, 2] = t, np.maximum(ready, t), leave
            interleaved += int(first <= last_release)
            last_release = max(last_release, last)
            t = leave
    kinds = tuple(tuple("comm" if isinstance(s, Comm) else "compute" for s in p.leaves) for p in progs)
    return SimRecords(times, tuple(p.names for p in progs), kinds, 0), interleaved


def stage_ops(prog: Program) -> list[tuple]:
    """("c", [stage indexes], [seconds [G]]) for a run of consecutive compute stages on one resource,
    ("m", index, Comm) for a communication stage."""
    ops: list[tuple] = []
    for s, st in enumerate(prog.leaves):
        if isinstance(st, Comm):
            ops.append(("m", s, st))
        elif ops and ops[-1][0] == "c" and ops[-1][3] == st.resource:
            ops[-1][1].append(s)
            ops[-1][2].append(np.asarray(st.seconds, dtype=float))
        else:
            ops.append(("c", [s], [np.asarray(st.seconds, dtype=float)], st.resource))
    return ops


def _run(rec: np.ndarray, idx: list[int], secs: list[np.ndarray], t: np.ndarray, shared: bool) -> np.ndarray:
    """A run of compute stages from ``t`` [G]; returns its end. Rounded as the interpreter rounds: one
    timeout of the summed seconds (t0 + running total), or, queued on the GPU's units, one timeout per stage."""
    if shared:
        rec[:, idx, 0] = t[:, None]
        now = t
        for s, sec in zip(idx, secs):
            rec[:, s, 1] = now
            now = now + sec
            rec[:, s, 2] = now
        return now
    total = np.zeros_like(t)
    for s, sec in zip(idx, secs):
        rec[:, s, 0] = rec[:, s, 1] = t + total
        total = total + sec
        rec[:, s, 2] = t + total
    return t + total


def comm_phase(st: Comm, join: np.ndarray, topo: Topology, link_free: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """One communication stage joined at ``join`` [G]: (leave [G], ready [G], first and last release time).
    ``link_free`` [L] (when each link has drained what it was given) is advanced in place.

    A GPU's flows are released one start-up latency after it joined, a node's once every GPU there has;
    an arrival gate once the flows feeding it have arrived and its owner has started (``FlowSet``). ready:
    when the partners of the flows a GPU waits for had joined."""
    f, g, gpn = st.flows, topo.num_gpus, topo.gpus_per_node
    base = st.latency_s
    nbytes = f.nbytes
    if st.nvlink_scale != 1.0:  # as the interpreter: slower kernels inside a node mean more wire time per byte
        nbytes = np.where(f.intra_node(gpn), nbytes * st.nvlink_scale, nbytes)
    opened, node_open = open_times(join, base, gpn)
    gates = _Gates(GateLayout.of(f, g, gpn), f.gate, opened, node_open, base)
    if f.size == 0:
        return opened, np.zeros(g), np.inf, -np.inf
    paths = topo.flow_paths(f)
    finish = _drain(paths, nbytes, gates, topo, link_free)
    leave, ready = _leave(f, finish, gates.group_rel[f.gate], opened, g, gpn)
    return leave, ready, float(gates.release.min()), float(gates.release.max())


class _Gates:
    """Release time of every flow (+inf while an arrival gate is still closed), the gate groups' ready
    times (``group_rel``), and the arrival gates' bookkeeping."""

    def __init__(self, lay: GateLayout, gate: np.ndarray, opened: np.ndarray, node_open: np.ndarray,
                 base: float) -> None:
        a = lay.arrival_gates
        group_time = np.concatenate([opened, node_open, np.full(a, np.inf)])  # release per gate group
        self.group_rel = np.concatenate([opened - base, node_open - base, np.zeros(a)])
        self.first_arrival = lay.first_arrival
        if a:
            owner = lay.owner
            has = owner >= 0
            self.owner_open = np.where(has, opened[np.where(has, owner, 0)], -np.inf)
            self.group_rel[self.first_arrival:] = np.where(has, self.owner_open - base, 0.0)
            self.feeds = lay.feeds
            self.arr_left = lay.fed.copy()  # the owner's start-up is known: only the feeding flows remain
            self.arr_t = self.owner_open.copy()
            opened_now = np.flatnonzero(self.arr_left == 0)  # gates nothing feeds: open with their owner
            group_time[self.first_arrival + opened_now] = self.arr_t[opened_now]
        self.group_time = group_time
        self.release = group_time[gate]
        self.gate = gate

    def arrived(self, idx: np.ndarray, finish: np.ndarray) -> None:
        """Flows ``idx`` finished at ``finish``: count them towards the gates they feed; gates whose
        inputs have all arrived get their release time."""
        fd = self.feeds[idx]
        sel = fd >= 0
        if not sel.any():
            return
        gates, when = fd[sel], np.broadcast_to(finish[:, None], fd.shape)[sel]
        maximum_at(self.arr_t, gates, when)
        np.subtract.at(self.arr_left, gates, 1)
        done = np.unique(gates[self.arr_left[gates] == 0])
        k = self.first_arrival + done
        self.group_time[k] = self.arr_t[done]
        moved = np.isin(self.gate, k)
        self.release[moved] = self.group_time[self.gate[moved]]



def _drain(paths: np.ndarray, nbytes: np.ndarray, gates: _Gates, topo: Topology, link_free: np.ndarray) -> np.ndarray:
    """Finish time of every flow [F]. Flows drain in waves: every flow whose release time is known drains
    in one pass, in release order (first come, first served per link); the arrival gates they open give
    the next wave its release times. Without arrival gates that is one exact pass; with them a forwarded
    chunk is served after the earlier wave's flows on its link even when released before some of them
    (the interpreter serves it first): the difference is measured in docs/performance.md."""
    cap, lat = topo.capacity_Bps, topo.latency_s
    finish = np.full(nbytes.size, np.nan)
    todo = np.ones(nbytes.size, dtype=bool)
    has_gates = getattr(gates, "feeds", None) is not None
    while todo.any():
        now = todo & np.isfinite(gates.release)
        if not now.any():
            raise RuntimeError("lockstep engine: an arrival gate never opens")
        idx = np.flatnonzero(now)
        batch_of, batch_times = _batches(gates, idx)
        if idx.size == nbytes.size:  # every flow in this wave (no arrival gates): no copies of the paths
            finish[:] = drain_batches(paths, nbytes, gates.release, cap, lat, link_free, batch_of, batch_times)
        else:
            finish[idx] = drain_batches(paths[idx], nbytes[idx], gates.release[idx], cap, lat, link_free,
                                        batch_of, batch_times)
        todo[idx] = False
        if has_gates:
            gates.arrived(idx, finish[idx])
    return finish


def _batches(gates: _Gates, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each flow's batch (flows released at one instant) [n] and the batch times in order [R], found over
    the gate groups (a flow is released with its group), not by sorting the flows."""
    grp = gates.gate[idx]
    used = np.flatnonzero(np.bincount(grp, minlength=gates.group_time.size))
    times, inv = np.unique(gates.group_time[used], return_inverse=True)
    batch_of_group = np.zeros(gates.group_time.size, dtype=np.int64)
    batch_of_group[used] = inv
    return batch_of_group[grp], times


def _leave(f, finish: np.ndarray, rel: np.ndarray, opened: np.ndarray, g: int, gpn: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Leave time [G] (every flow a GPU sends, receives or waits for through its node is done, and its
    start-up is over) and ready time [G] (its flows' partners had joined)."""
    done, ready = opened.copy(), np.zeros(g)
    for who in (f.src, f.dst):
        maximum_at(done, who, finish)
        maximum_at(ready, who, rel)
    wn = f.wait_node >= 0
    if wn.any():
        nodes = g // gpn
        nd, nr = np.full(nodes, -np.inf), np.zeros(nodes)
        maximum_at(nd, f.wait_node[wn], finish[wn])
        maximum_at(nr, f.wait_node[wn], rel[wn])
        done = np.maximum(done, np.repeat(nd, gpn))
        ready = np.maximum(ready, np.repeat(nr, gpn))
    return done, ready
