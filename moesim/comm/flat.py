"""``flat``: one copy per (token, expert) from the token's GPU straight to the expert's GPU (NCCL-style
one-hop sends), gated by the sender's start-up. The compiled one-pass counter builds a whole layer's traffic
for every one-hop algorithm (``low_latency`` too)."""

from __future__ import annotations

import numpy as np

from moesim.comm.base import ALGORITHMS, AllToAll, Assignments, LayerTraffic
from moesim.comm.pairs import flows, from_counts, pairs
from moesim.hw.flows import FlowSet
from moesim.hw.topology import Topology
from moesim.util.jit import njit


class Flat(AllToAll):
    """One hop: every (token, expert) copy from the token's GPU to the expert's."""

    name = "flat"

    def flows(self, a: Assignments, topo: Topology, dispatch_bytes: int, combine_bytes: int, scale: float,
              chunks: int = 1) -> tuple[FlowSet, FlowSet]:
        return _flat(a.src_gpu, a.dst, topo.num_gpus, dispatch_bytes, combine_bytes, scale)


def _flat(src_gpu, dst, g, dispatch_bytes, combine_bytes, scale) -> tuple[FlowSet, FlowSet]:
    src = np.broadcast_to(src_gpu[:, None], dst.shape)
    sel = (dst >= 0) & (dst != src)
    s, d, cnt = pairs(src[sel], dst[sel], g, scale)
    return (flows(s, d, cnt * dispatch_bytes, s), flows(d, s, cnt * combine_bytes, d))


def compiled_traffic(src_gpu, dst_gpu, keep, slot, slots_total, topo, dispatch_bytes, combine_bytes, scale,
                   live) -> LayerTraffic:
    """``layer_traffic`` for one-hop algorithms from one compiled pass over the assignments
    (``_flat_counts_py``): the same integer counts, so the same figures, without the [N, k] temporaries."""
    g, k = topo.num_gpus, keep.shape[1]
    c = lambda a, t: np.ascontiguousarray(a, dtype=t)  # noqa: E731
    slots, pairs, hists, kept, dropped = _flat_counts_jit(
        c(src_gpu, np.int64), c(dst_gpu, np.int64), c(keep, np.bool_), c(live, np.bool_), c(slot, np.int64),
        slots_total, g, topo.gpu_tables[0])
    s, d, cnt = from_counts(pairs, g, scale)
    n = keep.shape[0]
    nodes_total = int(np.arange(k + 1) @ hists[1])
    return LayerTraffic(slots.reshape(g, -1) * scale, flows(s, d, cnt * dispatch_bytes, s),
                        flows(d, s, cnt * combine_bytes, d), copies=float(kept) * scale,
                        dropped=float(dropped) * scale, distinct_nodes_mean=nodes_total / n if n else 0.0,
                        devices_hist=hists[0] * scale, nodes_hist=hists[1] * scale)


def _flat_counts_py(src_gpu, dst_gpu, keep, live, slot, slots_total, g, node):
    """One pass over the assignments [N, k] of a one-hop all-to-all: tokens per slot [slots_total], copies per
    (source, destination) GPU pair [g · g] (the token's own GPU excluded), tokens by number of distinct
    destination GPUs and nodes [2, k + 1], kept and dropped (live, not kept) assignments. Integers: the
    numpy passes of ``layer_traffic`` count the same. node [G]: each GPU's node."""
    n, k = keep.shape
    slots, pairs = np.zeros(slots_total, dtype=np.int64), np.zeros(g * g, dtype=np.int64)
    hists = np.zeros((2, k + 1), dtype=np.int64)
    gpus, nodes = np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64)
    kept = dropped = 0
    for i in range(n):
        s = src_gpu[i]
        ng = nn = 0
        for j in range(k):
            if not keep[i, j]:
                dropped += live[i, j]
                continue
            d = dst_gpu[i, j]
            kept += 1
            slots[slot[i, j]] += 1
            if d != s:
                pairs[s * g + d] += 1
            ng = _add_distinct(gpus, ng, d)
            nn = _add_distinct(nodes, nn, node[d])
        hists[0, ng] += 1
        hists[1, nn] += 1
    return slots, pairs, hists, kept, dropped


def _add_distinct(seen, n, v):
    """Append v to seen[:n] unless it is there; the new length."""
    for t in range(n):
        if seen[t] == v:
            return n
    seen[n] = v
    return n + 1


if njit is not None:
    _add_distinct = njit(cache=True, nogil=True, inline="always")(_add_distinct)
    _flat_counts_jit = njit(cache=True, nogil=True)(_flat_counts_py)
else:  # pragma: no cover (exercised by MOESIM_NO_JIT)
    _flat_counts_jit = None

ALGORITHMS.register("flat", Flat(), help="one copy per (token, expert) straight to the expert's GPU (NCCL-style)")
