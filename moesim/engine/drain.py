"""Scalable-mode network: every link drains the flows released onto it as a first-come-first-served queue.

Flows released at one instant form a batch. A link that is free at ``f`` and receives a batch of ``B`` bytes
at time ``t`` finishes it at ``max(f, t) + B / C``, and every flow of the batch is done on that link then;
a flow is done when the last link on its path has drained it, plus its path latency. A batch depends only
on batches released before it, so a GPU whose partners are ready leaves when its own flows are done (the
phase's partial order, as in the exact max-min model); for flows that start together it gives the same
makespan as max-min sharing whenever the busiest link stays busy. No event per flow is needed.

Releases are resolved lazily: only when a GPU has every flow it waits for released does it need their
finish times (``request``), and then every batch released so far is resolved in one vectorised pass, after
all events of that instant (so same-instant releases form one batch). For a dense all-to-all that is once
per phase, at the last join.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

LATE = 2  # SimPy priority after NORMAL (1): resolved when every event of its instant has run


def drain_batches(paths: np.ndarray, nbytes: np.ndarray, release: np.ndarray, capacity: np.ndarray,
                  latency: np.ndarray, link_free: np.ndarray, batch_of: np.ndarray | None = None) -> np.ndarray:
    """Finish time (seconds) of every flow [F] released at ``release`` [F].

    paths [F, P] link ids (-1 padded); nbytes [F]; capacity, latency, link_free [L] (bytes/s, s, s); flows
    with equal release times form one batch (``batch_of`` [F]: each flow's batch index in time order, when
    the caller knows it). ``link_free`` is updated in place.

    Per touched link l and batch r (in time order): f[l, r] = max(f[l, r−1], s_r) + d[l, r], with d the
    batch's bytes over the link's capacity; closed form f = P + max(f0, cummax(s − (P − d))), P = cumsum(d).
    """
    valid = paths >= 0
    if batch_of is None:
        times, batch_of = np.unique(release, return_inverse=True)
    else:
        times = np.full(int(batch_of[-1]) + 1 if batch_of.size else 0, np.inf)
        np.minimum.at(times, batch_of, release)
    el = paths[valid]
    if el.size == 0:
        return release.astype(float).copy()
    er = np.broadcast_to(batch_of[:, None], paths.shape)[valid]
    present = np.bincount(el, minlength=capacity.size) > 0
    touched = np.flatnonzero(present)
    l_of = (np.cumsum(present) - 1)[el]
    n_r = times.size
    d = np.bincount(l_of * n_r + er, weights=np.broadcast_to(nbytes[:, None], paths.shape)[valid],
                    minlength=touched.size * n_r).reshape(touched.size, n_r) / capacity[touched][:, None]
    p = np.cumsum(d, axis=1)
    f = p + np.maximum(np.maximum.accumulate(times[None, :] - (p - d), axis=1), link_free[touched][:, None])
    link_free[touched] = f[:, -1]
    per_entry = np.full(paths.shape, -np.inf)
    per_entry[valid] = f[l_of, er]
    finish = np.maximum(per_entry.max(axis=1), release)
    return finish + np.where(valid, latency[np.maximum(paths, 0)], 0.0).sum(axis=1)


def drain_batch(paths: np.ndarray, nbytes: np.ndarray, now: float, capacity: np.ndarray,
                latency: np.ndarray, link_free: np.ndarray) -> np.ndarray:
    """One batch released at ``now`` (see ``drain_batches``)."""
    return drain_batches(paths, nbytes, np.full(paths.shape[0], float(now)), capacity, latency, link_free)


class _Late(simpy.Event):
    """An event already triggered, processed after every NORMAL event of the current instant."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__(env)
        self._ok, self._value = True, None
        env.schedule(self, priority=LATE)


class DrainNetwork:
    """The scalable network inside a SimPy environment; same interface as ``FluidNetwork``."""

    def __init__(self, env: simpy.Environment, capacity: np.ndarray, latency: np.ndarray) -> None:
        self.env, self.capacity, self.latency = env, capacity, latency
        self.link_free = np.zeros(capacity.size)
        self.pending: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, Callable]] = []
        self.scheduled = False
        self.recomputes = 0

    def add(self, paths: np.ndarray, nbytes: np.ndarray, tokens: np.ndarray,
            on_done: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Release flows now. paths [F, P], nbytes [F], tokens [F] (handed back to ``on_done`` with the
        flows' finish times, which may lie in the future) once somebody ``request``s them."""
        self.pending.append((self.env.now, paths, nbytes, tokens, on_done))

    def request(self) -> None:
        """A GPU needs finish times: resolve everything released so far, at the end of this instant."""
        if not self.scheduled:
            self.scheduled = True
            _Late(self.env).callbacks.append(lambda _e: self._resolve())

    def _resolve(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        if not batch:
            return
        width = max(p.shape[1] for _, p, *_ in batch)
        paths = np.concatenate([p if p.shape[1] == width else
                                np.hstack([p, np.full((p.shape[0], width - p.shape[1]), -1, dtype=p.dtype)])
                                for _, p, *_ in batch])
        nbytes = np.concatenate([b for _, _, b, *_ in batch])
        sizes = np.array([b.size for _, _, b, *_ in batch])
        at_t = np.array([t for t, *_ in batch])
        new_batch = np.concatenate([[0], np.diff(at_t) > 0]).cumsum()  # pending entries come in time order
        finish = drain_batches(paths, nbytes, np.repeat(at_t, sizes), self.capacity, self.latency, self.link_free,
                               np.repeat(new_batch, sizes))
        self.recomputes += 1
        # one call per run of entries with the same owner (a phase's releases are mostly consecutive)
        at, i = 0, 0
        while i < len(batch):
            j, owner = i, batch[i][4]
            while j + 1 < len(batch) and batch[j + 1][4] is owner:
                j += 1
            n = sum(b[2].size for b in batch[i:j + 1])
            tokens = batch[i][3] if i == j else np.concatenate([b[3] for b in batch[i:j + 1]])
            owner(tokens, finish[at:at + n])
            at, i = at + n, j + 1
