"""From per-token expert assignments to per-GPU work and the real per-(source, destination) flows, for the
scenario's all-to-all algorithm (``ALGORITHMS``: flat, hierarchical, low_latency; see their modules)."""

from __future__ import annotations

import numpy as np

from moesim.comm import flat
from moesim.comm.base import ALGORITHMS, AllToAll, Assignments, LayerTraffic
from moesim.comm.pairs import DENSE_PAIRS
from moesim.hw.flows import FlowSet
from moesim.hw.topology import Topology
from moesim.util.jit import njit

__all__ = ["FlowSet", "LayerTraffic", "layer_traffic"]


def layer_traffic(src_gpu: np.ndarray, dst_gpu: np.ndarray, keep: np.ndarray, slot: np.ndarray,
                  slots_total: int, topo: Topology, algorithm: AllToAll | str, dispatch_bytes: int, combine_bytes: int,
                  scale: float = 1.0, live: np.ndarray | None = None, chunks: int = 1) -> LayerTraffic:
    """Build one layer's work and flows.

    src_gpu [N]: GPU of each routed token; dst_gpu, slot [N, k]: destination GPU and physical slot of each
    assignment; keep [N, k]: False where capacity dropped it (or padding); live [N, k]: False only for
    padding (expert-choice rows are padded), default all live. ``scale`` converts sampled tokens to real
    ones (scalable mode: real tokens per GPU / sampled tokens per GPU). algorithm: an ``AllToAll`` or its
    name in ``ALGORITHMS``.
    """
    alg = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else algorithm
    live = np.ones(keep.shape, dtype=bool) if live is None else live
    g = topo.num_gpus
    if alg.one_hop and flat._flat_counts_jit is not None and g * g <= DENSE_PAIRS:
        return flat.compiled_traffic(src_gpu, dst_gpu, keep, slot, slots_total, topo, dispatch_bytes, combine_bytes,
                                     scale, live)
    slot_tokens = np.bincount(slot[keep], minlength=slots_total).reshape(g, -1) * scale
    dst = np.where(keep, dst_gpu, -1)
    uniq_gpu = _unique_per_row(dst)  # [N, k], -1 where duplicate or dropped
    uniq_node = _unique_per_row(np.where(dst >= 0, dst // topo.gpus_per_node, -1))
    nodes_per_token = (uniq_node >= 0).sum(axis=1)
    dispatch, combine = alg.flows(Assignments(src_gpu, dst, uniq_gpu, uniq_node), topo, dispatch_bytes,
                                  combine_bytes, scale, chunks)
    width = keep.shape[1] + 1
    devices_per_token = (uniq_gpu >= 0).sum(axis=1)
    return LayerTraffic(slot_tokens, dispatch, combine, copies=float(keep.sum()) * scale,
                        dropped=float((live & ~keep).sum()) * scale,
                        distinct_nodes_mean=float(nodes_per_token.mean()) if nodes_per_token.size else 0.0,
                        devices_hist=np.bincount(devices_per_token, minlength=width)[:width] * scale,
                        nodes_hist=np.bincount(nodes_per_token, minlength=width)[:width] * scale)


def _unique_per_row(x: np.ndarray) -> np.ndarray:
    """Rows of x with repeated values (and -1) replaced by -1; first occurrences kept (in sorted order).
    Compiled (numba, when installed) as a per-row insertion sort: the same integers, 10x fewer passes."""
    if _unique_rows_jit is not None:
        return _unique_rows_jit(np.ascontiguousarray(x))
    s = np.sort(x, axis=1)
    dup = np.zeros_like(s, dtype=bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    return np.where(dup, -1, s)


def _unique_rows_py(x):
    n, k = x.shape
    out = np.empty_like(x)
    row = np.empty(k, dtype=x.dtype)
    for i in range(n):
        for j in range(k):  # insertion sort of one short row
            v = x[i, j]
            t = j
            while t > 0 and row[t - 1] > v:
                row[t] = row[t - 1]
                t -= 1
            row[t] = v
        for j in range(k):
            out[i, j] = -1 if j > 0 and row[j] == row[j - 1] else row[j]
    return out


_unique_rows_jit = njit(cache=True, nogil=True)(_unique_rows_py) if njit is not None else None
