"""Scalable-mode network: each link drains its flows as a single work-conserving server.

A link that carries flows of sizes b_i starting at s_i finishes all of them at
``max_j (s_(j) + Σ_{i: s_i >= s_(j)} b_i / C)`` (a fluid single-server queue fed by the flows). A flow is
taken to finish when the last link on its path has drained. This needs no event per flow, and for an
all-to-all whose flows start together it gives the same makespan as max-min sharing whenever the busiest
link stays busy; finer timing inside the phase is lost (tests bound the difference).
"""

from __future__ import annotations

import numpy as np


def drain_finish_times(paths: np.ndarray, nbytes: np.ndarray, start: np.ndarray, capacity: np.ndarray,
                       latency: np.ndarray) -> np.ndarray:
    """Finish time of every flow [F] (seconds): its links' drain times, plus its path latency."""
    f = paths.shape[0]
    valid = paths >= 0
    ef, el = np.nonzero(valid)[0], paths[valid]
    if ef.size == 0:
        return start.copy()
    order = np.lexsort((-start[ef], el))  # by link, latest start first
    ef, el = ef[order], el[order]
    tail = _segment_cumsum(nbytes[ef], el) / capacity[el]  # bytes starting at or after this one
    cand = start[ef] + tail
    link_done = np.full(capacity.size, -np.inf)
    np.maximum.at(link_done, el, cand)
    finish = np.full(f, -np.inf)
    np.maximum.at(finish, ef, link_done[el])
    lat = np.where(valid, latency[np.maximum(paths, 0)], 0.0).sum(axis=1)
    return np.where(np.isfinite(finish), finish, start) + lat


def _segment_cumsum(x: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Running sum of x restarting wherever seg changes (seg sorted)."""
    c = np.cumsum(x)
    first = np.concatenate([[True], seg[1:] != seg[:-1]])
    base = np.where(first, c - x, 0.0)
    return c - np.maximum.accumulate(base)
