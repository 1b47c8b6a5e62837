"""Flow-level network: max-min fair sharing of link bandwidth, recomputed on every arrival and completion.

Each flow has a path of directed links. Rates follow max-min fairness, computed by progressive filling
(Bertsekas & Gallager, Data Networks, 2nd ed., §6.5.2): raise every unfrozen flow's rate equally until a
link saturates, freeze the flows crossing it, repeat. Between events rates are constant, so a flow's
remaining bytes fall linearly; the next event is the earliest completion or a new arrival.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from moesim.util.errors import EngineError

DONE_BYTES = 1e-6  # a flow with fewer bytes left than this (relative to its size) has finished


def maxmin_rates(paths: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates (bytes/s) of flows over links.

    paths: [F, P] link ids, -1 padded; capacity: [L] bytes/s. A flow with no links gets rate inf.
    """
    f = paths.shape[0]
    rates = np.full(f, np.inf)
    valid = paths >= 0
    entry_flow = np.nonzero(valid)[0]
    entry_link = paths[valid]
    active = np.bincount(entry_flow, minlength=f) > 0
    residual = capacity.astype(np.float64).copy()
    level = 0.0
    for _ in range(capacity.size + 1):  # each round saturates at least one link
        if not active.any():
            break
        live = active[entry_flow]
        count = np.bincount(entry_link[live], minlength=capacity.size)
        used = count > 0
        share = np.where(used, residual / np.maximum(count, 1), np.inf)
        step = float(share.min())
        level += step
        residual[used] -= step * count[used]
        # the links at the minimum share are saturated by construction (not by a tolerance on the residual,
        # which huge or tiny capacities defeat)
        saturated = used & ((share <= step * (1 + 1e-12)) | (residual <= 1e-9 * capacity))
        hit = np.zeros(f, dtype=bool)
        hit[entry_flow[live & saturated[entry_link]]] = True
        rates[hit] = level
        active &= ~hit
    else:
        if active.any():
            raise EngineError("the max-min rate solver did not converge (link capacities out of range?)")
    return rates


class FluidNetwork:
    """The shared network inside a SimPy environment.

    ``add`` starts flows now; ``on_done(tokens, times)`` is called with the caller's tokens of finished
    flows and their finish times (data drained plus path latency), possibly in the future of ``env.now``.
    """

    def __init__(self, env: simpy.Environment, capacity: np.ndarray, latency: np.ndarray) -> None:
        self.env, self.capacity, self.latency = env, capacity, latency
        self.paths = np.zeros((0, 4), dtype=np.int64)
        self.left = np.zeros(0)
        self.size = np.zeros(0)
        self.rates = np.zeros(0)
        self.owner: list[tuple[Callable[[np.ndarray, np.ndarray], None], np.ndarray]] = []
        self.owner_of = np.zeros(0, dtype=np.int64)
        self.token = np.zeros(0, dtype=np.int64)
        self.t_last = 0.0
        self.generation = 0
        self.dirty = False
        self.recomputes = 0

    def add(self, paths: np.ndarray, nbytes: np.ndarray, tokens: np.ndarray,
            on_done: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Start flows now. paths [F, P], nbytes [F], tokens [F] (returned to ``on_done``)."""
        self._advance()
        if paths.shape[1] < self.paths.shape[1]:
            paths = np.pad(paths, ((0, 0), (0, self.paths.shape[1] - paths.shape[1])), constant_values=-1)
        self.owner.append((on_done, tokens))
        n = len(self.owner) - 1
        self.paths = np.concatenate([self.paths, paths])
        self.left = np.concatenate([self.left, nbytes.astype(float)])
        self.size = np.concatenate([self.size, nbytes.astype(float)])
        self.rates = np.concatenate([self.rates, np.zeros(len(nbytes))])
        self.owner_of = np.concatenate([self.owner_of, np.full(len(nbytes), n)])
        self.token = np.concatenate([self.token, np.arange(len(nbytes))])
        if not self.dirty:  # batch every arrival at this instant into one rate computation
            self.dirty = True
            ev = self.env.event()
            ev.callbacks.append(lambda _e: self._reschedule())
            ev.succeed()

    def request(self) -> None:
        """Finish times are reported as flows complete; nothing to ask for."""

    def _advance(self) -> None:
        dt = self.env.now - self.t_last
        if dt > 0 and self.left.size:
            self.left -= np.where(np.isfinite(self.rates), self.rates * dt, self.left)
        self.t_last = self.env.now

    def _reschedule(self) -> None:
        self.dirty = False
        self._advance()
        self._finish()
        if not self.left.size:
            return
        self.rates = maxmin_rates(self.paths, self.capacity)
        self.recomputes += 1
        dt = float(np.min(self.left / self.rates))
        if dt > 0 and self.env.now + dt == self.env.now:
            raise EngineError(f"simulated time stopped advancing at t = {self.env.now:.3g} s: a transfer of "
                              f"{dt:.3g} s is below the clock's resolution there (a latency, size or bandwidth "
                              "out of any real range?)")
        self.generation += 1
        gen = self.generation
        self.env.timeout(max(dt, 0.0)).callbacks.append(lambda _e: self._wake(gen))

    def _wake(self, gen: int) -> None:
        if gen == self.generation and not self.dirty:
            self._reschedule()

    def _finish(self) -> None:
        done = (self.left <= DONE_BYTES * np.maximum(self.size, 1.0)) | ~np.isfinite(self.rates) & (
            self.rates > 0)
        if not done.any():
            return
        lat = np.where(self.paths[done] >= 0, self.latency[np.maximum(self.paths[done], 0)], 0.0).sum(axis=1)
        times = self.env.now + lat
        owners, tokens = self.owner_of[done], self.token[done]
        keep = ~done
        for name in ("paths", "left", "size", "rates", "owner_of", "token"):
            setattr(self, name, getattr(self, name)[keep])
        for o in np.unique(owners):
            sel = owners == o
            cb, tok = self.owner[o]
            cb(tok[tokens[sel]], times[sel])
