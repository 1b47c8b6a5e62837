"""One communication stage of one program, as seen by the GPU processes.

A GPU ``join``s when it reaches the stage and pays the stage's start-up latency (kernel launch, notify)
before its data moves: flows are released to the network when their gate opens, one start-up latency after
their source GPU joined (or after the last GPU of a node did); a GPU leaves when every flow it waits for
has finished (it sends, it receives, or it waits through its node), and no sooner than one start-up
latency after it joined. The latency is a cost added to the transfer, not a floor under it (a transfer of
B bytes at C bytes/s joined at t leaves at t + latency + B/C + path latency).

``ready_t[g]``: when the partners of the last flow GPU g waits for had joined: the time before it is
waiting, the time after it (start-up included) is data moving.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import simpy

from moesim.engine.gates import GateLayout
from moesim.hw.flows import FlowSet


class Network(Protocol):
    """What a communication stage needs from a network model (``FluidNetwork``, ``DrainNetwork``)."""

    recomputes: int

    def add(self, paths: np.ndarray, nbytes: np.ndarray, tokens: np.ndarray, on_done) -> None: ...

    def request(self) -> None: ...


class CommPhase:
    """Joins, gates and completions of one communication stage.

    Gate groups: ``k < G`` GPU k joined; ``G ≤ k < G + N`` every GPU of node k − G joined; ``k ≥ G + N``
    arrival gate a = k − G − N: its feeding flows arrived and its owner GPU joined (``FlowSet``).
    """

    def __init__(self, env: simpy.Environment, flows: FlowSet, paths: np.ndarray, gpus: int, gpn: int,
                 base_latency: float, net: Network) -> None:
        self.env, self.flows, self.gpus, self.gpn = env, flows, gpus, gpn
        self.base, self.net = base_latency, net
        self.joined = np.zeros(gpus, dtype=bool)
        self.events = [env.event() for _ in range(gpus)]
        self.done_t = np.zeros(gpus)
        self.ready_t = np.zeros(gpus)
        self.leaving = np.zeros(gpus, dtype=bool)
        self.node_joined = [0] * (gpus // gpn)
        self.layout = GateLayout.of(flows, gpus, gpn)  # the gate groups (engine/gates.py)
        self.first_arrival, self.groups = self.layout.first_arrival, self.layout.groups
        self._build_waiters()
        self._build_arrivals()
        self.flow_order = np.argsort(flows.gate, kind="stable")
        self.flow_bounds = np.searchsorted(flows.gate[self.flow_order], np.arange(self.groups + 1))
        # flows in gate order, so that one gate's flows are a slice (a view, no copy)
        self.paths_by_gate = paths[self.flow_order]  # (the only copy kept: phases of big runs hold many flows)
        self.bytes_by_gate = flows.nbytes[self.flow_order]

    def _build_waiters(self) -> None:
        """CSR of flow -> waiting GPUs: src, dst (if different), and every GPU of wait_node; and per gate
        group, the GPUs that wait for one of its flows (sparse: arrival gates make many small groups)."""
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
        self.group_rel = np.zeros(self.groups)  # when each gate group was released
        self._done_cb = self._flows_done  # one bound method: the drain network groups callbacks by identity
        # per gate group k: the GPUs that wait for some flow of it (unique); a GPU may leave once every group
        # it waits on is released and those flows are done
        pair = np.unique(f.gate[wf].astype(np.int64) * self.gpus + wg)
        self.g_gpu = pair % self.gpus
        self.g_start = np.searchsorted(pair // self.gpus, np.arange(self.groups + 1))
        self.unreleased = np.bincount(self.g_gpu, minlength=self.gpus)  # groups each GPU waits on, unreleased
        self.waiting = self.unreleased > 0  # GPUs that wait for any flow at all
        # no GPU can have all its flows in flight before as many groups are released as the least-waiting
        # GPU waits on: until then releases are only counted (dense all-to-alls skip the per-GPU tracking)
        busy = self.unreleased[self.unreleased > 0]
        self.min_need = int(busy.min()) if busy.size else 0
        self.released: list[int] = []
        self.tracking = False

    def _build_arrivals(self) -> None:
        """Per arrival gate: dependencies left (feeding flows + its owner's join), feeding flows not yet
        released, and the latest dependency time."""
        lay = self.layout
        a, self.feeds, owner = lay.arrival_gates, lay.feeds, lay.owner
        self.arr_left = lay.dependencies()
        self.arr_unreleased = lay.fed.copy()
        self.arr_t = np.zeros(a)
        self.arr_join_t = np.zeros(a)  # when the owner joined: the forwarded data's partners were ready then
        self.owned = {int(g): np.flatnonzero(owner == g) for g in np.unique(owner[owner >= 0])}

    def _waiters(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The GPUs waiting for flows ``idx`` (with repeats) and how many each flow has."""
        lo, hi = self.w_start[idx], self.w_start[idx + 1]
        counts = hi - lo
        entries = np.repeat(lo - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(counts.sum())
        return self.w_gpu[entries], counts

    def join(self, gpu: int) -> simpy.Event:
        """GPU ``gpu`` enters the stage now; the returned event fires when it may leave."""
        now = self.env.now
        self.joined[gpu] = True
        self.done_t[gpu] = max(self.done_t[gpu], now + self.base)  # (ready: the interpreter takes max with now)
        if self.base > 0:
            self.env.timeout(self.base).callbacks.append(lambda _e: self._open(gpu))
        else:
            self._open(gpu)
        if self.pending[gpu] == 0 and not self.leaving[gpu]:
            self._maybe_leave(np.array([gpu]))
        return self.events[gpu]

    def _open(self, gpu: int) -> None:
        """GPU ``gpu``'s start-up is over: release its gate group, its node's once every GPU there is, and
        count it towards the arrival gates it owns."""
        self._release(gpu)
        node = gpu // self.gpn
        self.node_joined[node] += 1
        if self.node_joined[node] == self.gpn:
            self._release(self.gpus + node)
        owned = self.owned.get(gpu)
        if owned is not None:
            self.arr_join_t[owned] = self.env.now - self.base
            self._arrived(owned, np.full(owned.size, self.env.now))

    def _arrived(self, gates: np.ndarray, times: np.ndarray) -> None:
        """Dependencies of arrival gates ``gates`` (with repeats) met at ``times`` (now or later)."""
        np.maximum.at(self.arr_t, gates, times)
        np.subtract.at(self.arr_left, gates, 1)
        for a in np.unique(gates[self.arr_left[gates] == 0]).tolist():
            self.arr_left[a] = -1  # opened once
            delay = float(self.arr_t[a]) - self.env.now
            k = self.first_arrival + a
            if delay > 0:
                self.env.timeout(delay).callbacks.append(lambda _e, k=k: self._release(k))
            else:
                self._release(k)

    def _release(self, k: int) -> None:
        """Release gate group ``k`` (its flows) to the network now."""
        lo, hi = self.flow_bounds[k], self.flow_bounds[k + 1]
        if lo == hi:
            return
        # ready (partners joined) at the join; start-up and chunk pipelining count as data moving
        self.group_rel[k] = self.env.now - self.base if k < self.first_arrival else \
            self.arr_join_t[k - self.first_arrival]
        self.net.add(self.paths_by_gate[lo:hi], self.bytes_by_gate[lo:hi], self.flow_order[lo:hi], self._done_cb)
        feeding = self.feeds[self.flow_order[lo:hi]]
        if (feeding >= 0).any():
            fed = feeding[feeding >= 0]
            np.subtract.at(self.arr_unreleased, fed, 1)
            if (self.arr_unreleased[fed] == 0).any():  # a gate's inputs are all in flight: it needs their times
                self.net.request()
        if not self.tracking:
            self.released.append(k)
            if len(self.released) < self.min_need:
                return
            self.tracking = True  # from now on, per GPU: the groups it waits on not yet released
            rows = [self.g_gpu[self.g_start[j]:self.g_start[j + 1]] for j in self.released]
            self.unreleased = self.unreleased - np.bincount(np.concatenate(rows), minlength=self.gpus)
            if (self.unreleased[self.waiting] == 0).any():
                self.net.request()
            return
        uniq = self.g_gpu[self.g_start[k]:self.g_start[k + 1]]
        left = self.unreleased[uniq] - 1
        self.unreleased[uniq] = left
        if left.size and left.min() == 0:  # some GPU has all it waits for in flight: it needs finish times
            self.net.request()

    def _flows_done(self, idx: np.ndarray, times: np.ndarray) -> None:
        gpus, counts = self._waiters(idx)
        np.maximum.at(self.done_t, gpus, np.repeat(times, counts))
        np.maximum.at(self.ready_t, gpus, np.repeat(self.group_rel[self.flows.gate[idx]], counts))
        np.subtract.at(self.pending, gpus, 1)
        feeding = self.feeds[idx]
        if (feeding >= 0).any():
            sel = feeding >= 0
            self._arrived(feeding[sel], np.broadcast_to(times[:, None], feeding.shape)[sel])
        self._maybe_leave(np.flatnonzero(np.bincount(gpus, minlength=self.gpus)))

    def _maybe_leave(self, gpus: np.ndarray) -> None:
        gpus = gpus[(self.pending[gpus] == 0) & self.joined[gpus] & ~self.leaving[gpus]]
        now, env = self.env.now, self.env
        for g in gpus.tolist():
            self.leaving[g] = True
            # the leave event itself is scheduled at the leave time (as simpy.Timeout does): one event, not two
            ev = self.events[g]
            ev._ok, ev._value = True, None
            env.schedule(ev, delay=max(0.0, float(self.done_t[g]) - now))
