"""Shared pieces of the traffic builders: (source, destination) pair counts and compact flow sets."""

from __future__ import annotations

import numpy as np

from moesim.hw.flows import FlowSet

DENSE_PAIRS = 1 << 24  # up to this many (src, dst) keys, pairs are counted in a dense array


def pairs(src: np.ndarray, dst: np.ndarray, n: int, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate (src, dst) pairs into unique pairs with summed counts × weight."""
    keys = src.astype(np.int64) * n + dst
    counts = np.bincount(keys, minlength=n * n) if n * n <= DENSE_PAIRS else None
    if counts is None:
        uniq, cnt = np.unique(keys, return_counts=True)
        return uniq // n, uniq % n, cnt * weight
    return from_counts(counts, n, weight)


def from_counts(counts: np.ndarray, n: int, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, count × weight) of the non-zero cells of a dense count array [n · n]."""
    uniq = np.flatnonzero(counts)
    return uniq // n, uniq % n, counts[uniq] * weight


def flows(src, dst, nbytes, gate, wait_node=None, feeds=None, owner=None) -> FlowSet:
    """A FlowSet with compact ids: GPU, node and gate ids in int32 (every layer's flows live from build to
    the engine: at 10,000 GPUs they are most of the memory), bytes in float64."""
    wn = np.full(src.size, -1, dtype=np.int32) if wait_node is None else wait_node
    return FlowSet(src.astype(np.int32), dst.astype(np.int32), nbytes.astype(np.float64),
                   gate.astype(np.int32), wn.astype(np.int32), feeds, owner)

