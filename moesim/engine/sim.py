"""The interpreter: one SimPy process per (GPU, micro-batch) walks that micro-batch's programs in order.

Compute stages hold one of the GPU's resources (``GpuUnits``), communication stages join a ``CommPhase``
whose flows move on the shared network (exact max-min ``FluidNetwork`` or scalable ``DrainNetwork``),
parallel branches run as child processes. Consecutive compute stages on one resource run as one hold of
it; a lone program that nobody shares a GPU with, with no SM-holding communication, runs them as one
timeout (same times, fewer events).
Events at equal times run in SimPy's (time, priority, insertion id) order, so runs are deterministic.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

import numpy as np
import simpy

from moesim.engine.bound import simulate_bound
from moesim.engine.drain import DrainNetwork
from moesim.engine.fluid import FluidNetwork
from moesim.engine.lockstep import simulate_lockstep, supports
from moesim.engine.phase import CommPhase
from moesim.engine.records import SimRecords
from moesim.engine.units import GpuUnits
from moesim.hw.topology import Topology
from moesim.ir.program import Comm, Parallel, Program, Stage


def simulate(programs: list[list[Program]], topo: Topology, exact: bool = True, engine: str = "des") -> SimRecords:
    """Run every micro-batch's programs on every GPU. programs[m]: micro-batch m's programs, in order; every
    micro-batch has the same number of programs with the same stages. ``exact``: max-min flow sharing (else
    the scalable drain model). ``engine``: des | lockstep | auto (``engine_for``) | bound (the closed-form
    bulk-synchronous floor, ``bound.py``)."""
    if engine == "bound":
        return simulate_bound(programs, topo)
    if engine_for(programs, exact, engine) == "lockstep":
        rec, interleaved = simulate_lockstep(programs, topo, _shares_gpu(programs))
        return replace(rec, engine="lockstep", interleaved_phases=interleaved)
    return _Interpreter(programs, topo, exact).run()


def engine_for(programs: list[list[Program]], exact: bool, engine: str) -> str:
    """The engine that runs: lockstep (drain network only) where it applies and was asked for or ``auto``."""
    if exact or engine == "des":
        return "des"
    return "lockstep" if supports(programs) else "des"


def _shares_gpu(programs: list[list[Program]]) -> bool:
    """Whether stages can compete for a GPU: several micro-batches, parallel branches or SM-holding comm."""
    if len(programs) > 1:
        return True
    return any(any(isinstance(st, Parallel) for st in p.stages) or
               any(isinstance(st, Comm) and st.sm_share > 0 for st in p.leaves) for p in programs[0])


class _Lazy:
    """A communication stage's phase, made when its first GPU arrives and dropped when its last one leaves
    (only the phases in flight are held: a big run has thousands of flows per phase)."""

    def __init__(self, stage: Comm) -> None:
        self.stage, self.phase, self.gone = stage, None, 0

    def open(self, make) -> CommPhase:
        self.phase = make(self.stage)
        return self.phase

    def left(self, gpus: int) -> None:
        self.gone += 1
        if self.gone == gpus:
            self.phase = None


class _Interpreter:
    def __init__(self, programs: list[list[Program]], topo: Topology, exact: bool) -> None:
        self.env = env = simpy.Environment()
        self.topo, self.g = topo, topo.num_gpus
        net_cls = FluidNetwork if exact else DrainNetwork
        self.net = net_cls(env, topo.capacity_Bps, topo.latency_s)
        self.shared = _shares_gpu(programs)
        self.units = [GpuUnits(env) for _ in range(self.g)] if self.shared else []
        width = max((len(p.leaves) for p in programs[0]), default=0)
        self.times = np.full((len(programs), len(programs[0]), self.g, width, 3), np.nan)
        self.compiled = [[self._compile(p.stages, [0]) for p in mb] for mb in programs]
        self.programs = programs

    def _compile(self, stages: tuple[Stage, ...], at: list[int]) -> list[tuple]:
        """Stages → ops with their record indexes: ("c", [indexes], [seconds per GPU, as lists], resource)
        for a run of consecutive compute stages, ("m", index, _Lazy phase, sm_share), ("p", [branch ops])."""
        ops: list[tuple] = []
        for st in stages:
            if isinstance(st, Parallel):
                ops.append(("p", [self._compile(b, at) for b in st.branches]))
            elif isinstance(st, Comm):
                ops.append(("m", at[0], _Lazy(st), st.sm_share))
                at[0] += 1
            else:
                last = ops[-1] if ops else None
                secs = np.asarray(st.seconds, dtype=float).tolist()  # per GPU; lists index faster than arrays
                if last is not None and last[0] == "c" and last[3] == st.resource:
                    last[1].append(at[0])
                    last[2].append(secs)
                else:
                    ops.append(("c", [at[0]], [secs], st.resource))
                at[0] += 1
        return ops

    def _phase(self, st: Comm) -> CommPhase:
        f = st.flows
        if st.nvlink_scale != 1.0:  # slower kernels inside a node: more wire time per byte, same bytes recorded
            gpn = self.topo.gpus_per_node
            f = replace(f, nbytes=np.where(f.intra_node(gpn), f.nbytes * st.nvlink_scale, f.nbytes))
        return CommPhase(self.env, f, self.topo.flow_paths(f), self.g, self.topo.gpus_per_node,
                         st.latency_s, self.net)

    def run(self) -> SimRecords:
        for gpu in range(self.g):
            for m in range(len(self.programs)):
                self.env.process(self._walk(gpu, m))
        self.env.run()
        first = self.programs[0]
        kinds = tuple(tuple("comm" if isinstance(s, Comm) else "compute" for s in p.leaves) for p in first)
        return SimRecords(self.times, tuple(p.names for p in first), kinds, self.net.recomputes)

    def _walk(self, gpu: int, m: int) -> Generator[simpy.Event, object, None]:
        for p, ops in enumerate(self.compiled[m]):
            yield from self._seq(ops, gpu, self.times[m, p, gpu])

    def _seq(self, ops: list[tuple], gpu: int, rec: np.ndarray) -> Generator[simpy.Event, object, None]:
        env = self.env
        for op in ops:
            kind = op[0]
            if kind == "c" and not self.shared:  # consecutive stages back to back: one event for all of them
                t0, total = env.now, 0.0
                for s, sec in zip(op[1], op[2]):
                    rec[s, 0] = rec[s, 1] = t0 + total
                    total += sec[gpu]
                    rec[s, 2] = t0 + total
                yield env.timeout(total)
            elif kind == "c":
                rec[op[1], 0] = env.now
                yield from self.units[gpu].run(op[3], [x[gpu] for x in op[2]], [rec[s] for s in op[1]])
            elif kind == "m":
                _, s, lazy, share = op
                phase = lazy.phase or lazy.open(self._phase)
                rec[s, 0] = env.now
                if share:
                    self.units[gpu].hold(share)
                yield phase.join(gpu)
                if share:
                    self.units[gpu].hold(-share)
                rec[s, 1], rec[s, 2] = max(phase.ready_t[gpu], rec[s, 0]), env.now
                lazy.left(self.g)
            else:
                yield env.all_of([env.process(self._seq(b, gpu, rec)) for b in op[1]])
