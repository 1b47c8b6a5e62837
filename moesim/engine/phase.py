"""One all-to-all phase (dispatch or combine of one layer) as seen by the GPU processes.

A GPU ``join``s when it is ready; flows start when their gate opens (their source GPU joined, or every GPU
of a node did); a GPU leaves the phase when every flow it waits for has finished (it sends, it receives,
or it waits through its node) and at least the collective start-up latency after it joined.
"""

from __future__ import annotations

import numpy as np
import simpy

from moesim.engine.drain import drain_finish_times
from moesim.engine.fluid import FluidNetwork
from moesim.traffic import FlowSet


class CommPhase:
    """Joins, gates and completions of one phase. ``backend`` is a FluidNetwork or None (scalable mode)."""

    def __init__(self, env: simpy.Environment, flows: FlowSet, paths: np.ndarray, gpus: int, gpn: int,
                 base_latency: float, backend: FluidNetwork | None, capacity: np.ndarray,
                 latency: np.ndarray) -> None:
        self.env, self.flows, self.paths, self.gpus, self.gpn = env, flows, paths, gpus, gpn
        self.base, self.backend, self.capacity, self.latency = base_latency, backend, capacity, latency
        self.join_t = np.full(gpus, np.nan)
        self.events = [env.event() for _ in range(gpus)]
        self.done_t = np.zeros(gpus)
        self.leaving = np.zeros(gpus, dtype=bool)
        self.node_joined = np.zeros(gpus // gpn, dtype=np.int64)
        self._build_waiters()
        order = np.argsort(flows.gate, kind="stable")
        self.by_gate = np.split(order, np.searchsorted(flows.gate[order], np.arange(1, gpus + gpus // gpn)))

    def _build_waiters(self) -> None:
        """CSR of flow -> waiting GPUs: src, dst (if different), and every GPU of wait_node."""
        f = self.flows
        ids = np.arange(f.size)
        parts_f, parts_g = [ids, ids[f.dst != f.src]], [f.src, f.dst[f.dst != f.src]]
        wn = np.flatnonzero(f.wait_node >= 0)
        if wn.size:
            members = f.wait_node[wn][:, None] * self.gpn + np.arange(self.gpn)
            parts_f.append(np.repeat(wn, self.gpn))
            parts_g.append(members.ravel())
        wf, wg = np.concatenate(parts_f), np.concatenate(parts_g)
        order = np.argsort(wf, kind="stable")
        self.w_flow, self.w_gpu = wf[order], wg[order]
        self.w_start = np.searchsorted(self.w_flow, np.arange(f.size + 1))
        self.pending = np.bincount(wg, minlength=self.gpus)

    def join(self, gpu: int) -> simpy.Event:
        """GPU ``gpu`` enters the phase now; the returned event fires when it may leave."""
        self.join_t[gpu] = self.env.now
        self.done_t[gpu] = max(self.done_t[gpu], self.env.now + self.base)
        self._release(self.by_gate[gpu])
        node = gpu // self.gpn
        self.node_joined[node] += 1
        if self.node_joined[node] == self.gpn:
            self._release(self.by_gate[self.gpus + node])
        if self.backend is None and not np.isnan(self.join_t).any():
            self._drain_all()
        self._maybe_leave(np.array([gpu]))
        return self.events[gpu]

    def _release(self, idx: np.ndarray) -> None:
        if idx.size == 0 or self.backend is None:
            return
        self.backend.add(self.paths[idx], self.flows.nbytes[idx], idx, self._flows_done)

    def _drain_all(self) -> None:
        f = self.flows
        node_ready = self.join_t.reshape(-1, self.gpn).max(axis=1)
        start = np.where(f.gate < self.gpus, self.join_t[np.minimum(f.gate, self.gpus - 1)],
                         node_ready[np.maximum(f.gate - self.gpus, 0)])
        finish = drain_finish_times(self.paths, f.nbytes, start, self.capacity, self.latency)
        self._flows_done(np.arange(f.size), finish, at_now=True)

    def _flows_done(self, idx: np.ndarray, times: np.ndarray, at_now: bool = False) -> None:
        lo, hi = self.w_start[idx], self.w_start[idx + 1]
        counts = hi - lo
        entries = np.repeat(lo - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(counts.sum())
        gpus = self.w_gpu[entries]
        np.maximum.at(self.done_t, gpus, np.repeat(times, counts))
        np.subtract.at(self.pending, gpus, 1)
        self._maybe_leave(np.unique(gpus))

    def _maybe_leave(self, gpus: np.ndarray) -> None:
        for g in gpus:
            if self.pending[g] == 0 and not np.isnan(self.join_t[g]) and not self.leaving[g]:
                self.leaving[g] = True
                # scalable mode can compute a finish before now (the last join resolves the phase): clamp
                delay = max(0.0, self.done_t[g] - self.env.now)
                ev = self.events[g]
                self.env.timeout(delay).callbacks.append(lambda _e, ev=ev: ev.succeed())
