"""``hierarchical``: DeepEP's normal kernels. One copy per (token, destination node) crosses the network, to
the GPU of the same local rank (same rail) in that node, which forwards one copy per (token, GPU) over
NVLink; destinations in the token's own node get one NVLink copy per (token, GPU). Combine reverses it:
results are reduced per (token, node) on the relay before crossing the network back. Both hops are
pipelined in ``comm.chunks`` chunks: a relay forwards a chunk once that chunk has reached it (arrival gates).
"""

from __future__ import annotations

import numpy as np

from moesim.comm.base import ALGORITHMS, AllToAll, Assignments
from moesim.comm.pairs import DENSE_PAIRS, flows, from_counts, pairs
from moesim.hw.flows import FlowSet
from moesim.hw.topology import Topology
from moesim.util.jit import njit

# SMs DeepEP's normal kernels hold: its README's example sets ``Buffer.set_num_sms(24)`` (an example
# setting, not a measurement: "estimated").
DEEPEP_NORMAL_SMS = 24


def _hier_pairs(src_gpu, uniq_gpu, uniq_node, g: int, gpn: int, scale: float):
    """The hierarchical all-to-all's three pair sets: NVLink copies inside the token's node, one network
    copy per (token, remote node) to the same local rank there, and the relay's NVLink forwards."""
    src = np.broadcast_to(src_gpu[:, None], uniq_gpu.shape)
    src_node = src // gpn
    local = (uniq_gpu >= 0) & (uniq_gpu // gpn == src_node) & (uniq_gpu != src)
    remote = (uniq_node >= 0) & (uniq_node != src_node)
    relay_of = lambda node, s: node * gpn + s % gpn  # noqa: E731
    rs = src[remote]
    fwd = (uniq_gpu >= 0) & (uniq_gpu // gpn != src_node)
    relay = relay_of(uniq_gpu // gpn, src)
    fwd &= uniq_gpu != relay
    return (pairs(src[local], uniq_gpu[local], g, scale), pairs(rs, relay_of(uniq_node[remote], rs), g, scale),
            pairs(relay[fwd], uniq_gpu[fwd], g, scale))


def _hier_counts_py(src_gpu, uniq_gpu, uniq_node, g, gpn):
    """``_hier_pairs``'s three dense count arrays [3, g · g] in one pass (integers: the same counts)."""
    n, k = uniq_gpu.shape
    counts = np.zeros((3, g * g), dtype=np.int64)
    for i in range(n):
        s = src_gpu[i]
        sn, rank = s // gpn, s % gpn
        for j in range(k):
            d = uniq_gpu[i, j]
            if d >= 0:
                dn = d // gpn
                if dn == sn:
                    if d != s:
                        counts[0, s * g + d] += 1
                else:
                    relay = dn * gpn + rank
                    if d != relay:
                        counts[2, relay * g + d] += 1
            nd = uniq_node[i, j]
            if nd >= 0 and nd != sn:
                counts[1, s * g + nd * gpn + rank] += 1
    return counts


_hier_counts_jit = njit(cache=True, nogil=True)(_hier_counts_py) if njit is not None else None


class _Chunks:
    """Arrival gates of a chunked two-hop transfer over G GPUs in C chunks (N nodes): sender gate (s, c)
    opens when GPU s's chunk c − 1 of the first hop has arrived everywhere (a sender sends its chunks in
    order); relay gate (r, c) opens when every first-hop chunk c into relay r has arrived and r has joined.
    Gate values are offset by G + N (``FlowSet.gate``)."""

    def __init__(self, g: int, nodes: int, c: int) -> None:
        self.g, self.c, self.base = g, c, g + nodes
        self.owner = np.concatenate([np.repeat(np.arange(g), c), np.repeat(np.arange(g), c)]).astype(np.int64)

    def sender(self, s: np.ndarray, c: int) -> np.ndarray:
        return s * self.c + c

    def relay(self, r: np.ndarray, c: int) -> np.ndarray:
        return self.g * self.c + r * self.c + c

    def first_hop(self, src, dst, nbytes, wait_node=None) -> FlowSet:
        """Chunk c of each flow: starts at its source's join (c = 0) or sender gate (s, c); its arrival
        counts towards sender gate (s, c + 1) and relay gate (dst, c)."""
        parts = []
        for c in range(self.c):
            gate = src if c == 0 else self.base + self.sender(src, c)
            nxt = self.sender(src, c + 1) if c + 1 < self.c else np.full(src.size, -1)
            feeds = np.stack([nxt, self.relay(dst, c)], axis=1).astype(np.int32)
            parts.append(flows(src, dst, nbytes / self.c, gate, wait_node, feeds, self.owner))
        return FlowSet.concat(parts)

    def second_hop(self, relay, dst, nbytes) -> FlowSet:
        """Chunk c of each flow leaves relay ``relay`` once relay gate (relay, c) has opened."""
        return FlowSet.concat([flows(relay, dst, nbytes / self.c, self.base + self.relay(relay, c),
                                      feeds=np.full((relay.size, 2), -1, dtype=np.int32), owner=self.owner)
                               for c in range(self.c)])


class Hierarchical(AllToAll):
    """DeepEP's normal kernels: two hops through a same-rail relay in each destination node."""

    name = "hierarchical"
    one_hop = False

    def flows(self, a: Assignments, topo: Topology, dispatch_bytes: int, combine_bytes: int, scale: float,
              chunks: int = 1) -> tuple[FlowSet, FlowSet]:
        return _hierarchical(a.src_gpu, a.uniq_gpu, a.uniq_node, topo, dispatch_bytes, combine_bytes, scale, chunks)

    def default_sm_share(self, sms: int) -> tuple[float, str]:
        return min(DEEPEP_NORMAL_SMS / sms, 0.5), f"estimated: DeepEP normal kernels, {DEEPEP_NORMAL_SMS} of {sms} SMs"


def _hierarchical(src_gpu, uniq_gpu, uniq_node, topo, dispatch_bytes, combine_bytes, scale, chunks=1):
    g, gpn = topo.num_gpus, topo.gpus_per_node
    if _hier_counts_jit is not None and g * g <= DENSE_PAIRS:  # the same counts in one compiled pass
        counts = _hier_counts_jit(np.ascontiguousarray(src_gpu, dtype=np.int64), np.ascontiguousarray(uniq_gpu),
                                  np.ascontiguousarray(uniq_node), g, gpn)
        (ls, ld, lc), (ns, nd, nc), (fs, fd, fc) = (from_counts(c, g, scale) for c in counts)
    else:
        (ls, ld, lc), (ns, nd, nc), (fs, fd, fc) = _hier_pairs(src_gpu, uniq_gpu, uniq_node, g, gpn, scale)
    ch = _Chunks(g, g // gpn, chunks)
    # DeepEP's normal kernels pipeline both hops in chunks: a relay forwards (dispatch) or sends back the
    # reduced results (combine) of a chunk once that chunk has reached it
    dispatch = FlowSet.concat([
        flows(ls, ld, lc * dispatch_bytes, ls, feeds=np.full((ls.size, 2), -1, dtype=np.int64), owner=ch.owner),
        ch.first_hop(ns, nd, nc * dispatch_bytes, wait_node=nd // gpn),
        ch.second_hop(fs, fd, fc * dispatch_bytes),
    ])
    combine = FlowSet.concat([
        flows(ld, ls, lc * combine_bytes, ld, feeds=np.full((ld.size, 2), -1, dtype=np.int64), owner=ch.owner),
        ch.first_hop(fd, fs, fc * combine_bytes),
        ch.second_hop(nd, ns, nc * combine_bytes),
    ])
    return dispatch, combine


ALGORITHMS.register("hierarchical", Hierarchical(),
                    help="DeepEP normal kernels: one copy per (token, node) over RDMA, forwarded over NVLink in chunks")
