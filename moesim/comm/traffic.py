"""From per-token expert assignments to per-GPU work and the real per-(source, destination) flows.

``flat``: one copy per (token, expert) from the token's GPU to the expert's GPU.
``hierarchical`` (DeepEP normal kernels): one copy per (token, destination node) crosses the network, to
the GPU of the same local rank (same rail) in that node, which forwards one copy per (token, GPU) over
NVLink; destinations in the token's own node get one NVLink copy per (token, GPU). Combine reverses it:
results are reduced per (token, node) on the relay before crossing the network back.
``low_latency`` (DeepEP low-latency kernels) moves the same flows as ``flat``: one copy per (token, expert)
from the token's GPU to the expert's, cross-node over RDMA with no relay, same-node over NVLink (DeepEP uses
NVLink inside a node since its 2025-06 release); it differs in start-up (no layout exchange) and SMs held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.hw.flows import FlowSet
from moesim.hw.topology import Topology
from moesim.util.jit import njit

__all__ = ["FlowSet", "LayerTraffic", "layer_traffic"]


@dataclass(frozen=True)
class LayerTraffic:
    """Work and traffic of one MoE layer.

    slot_tokens [G, S]: tokens per physical expert slot on each GPU. dispatch, combine: flows (bytes).
    copies: (token, expert) assignments computed; dropped: assignments dropped by capacity.
    """

    slot_tokens: np.ndarray
    dispatch: FlowSet
    combine: FlowSet
    copies: float
    dropped: float
    distinct_nodes_mean: float
    devices_hist: np.ndarray  # [k+1] tokens by number of distinct destination GPUs (scaled)
    nodes_hist: np.ndarray  # [k+1] tokens by number of distinct destination nodes (scaled)


_DENSE_PAIRS = 1 << 24  # up to this many (src, dst) keys, pairs are counted in a dense array


def _pairs(src: np.ndarray, dst: np.ndarray, n: int, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate (src, dst) pairs into unique pairs with summed counts × weight."""
    keys = src.astype(np.int64) * n + dst
    counts = np.bincount(keys, minlength=n * n) if n * n <= _DENSE_PAIRS else None
    if counts is None:
        uniq, cnt = np.unique(keys, return_counts=True)
        return uniq // n, uniq % n, cnt * weight
    return _from_counts(counts, n, weight)


def _from_counts(counts: np.ndarray, n: int, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, count × weight) of the non-zero cells of a dense count array [n · n]."""
    uniq = np.flatnonzero(counts)
    return uniq // n, uniq % n, counts[uniq] * weight


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
    return (_pairs(src[local], uniq_gpu[local], g, scale), _pairs(rs, relay_of(uniq_node[remote], rs), g, scale),
            _pairs(relay[fwd], uniq_gpu[fwd], g, scale))


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


def _flows(src, dst, nbytes, gate, wait_node=None, feeds=None, owner=None) -> FlowSet:
    """A FlowSet with compact ids: GPU, node and gate ids in int32 (every layer's flows live from build to
    the engine: at 10,000 GPUs they are most of the memory), bytes in float64."""
    wn = np.full(src.size, -1, dtype=np.int32) if wait_node is None else wait_node
    return FlowSet(src.astype(np.int32), dst.astype(np.int32), nbytes.astype(np.float64),
                   gate.astype(np.int32), wn.astype(np.int32), feeds, owner)


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
            parts.append(_flows(src, dst, nbytes / self.c, gate, wait_node, feeds, self.owner))
        return FlowSet.concat(parts)

    def second_hop(self, relay, dst, nbytes) -> FlowSet:
        """Chunk c of each flow leaves relay ``relay`` once relay gate (relay, c) has opened."""
        return FlowSet.concat([_flows(relay, dst, nbytes / self.c, self.base + self.relay(relay, c),
                                      feeds=np.full((relay.size, 2), -1, dtype=np.int32), owner=self.owner)
                               for c in range(self.c)])


def layer_traffic(src_gpu: np.ndarray, dst_gpu: np.ndarray, keep: np.ndarray, slot: np.ndarray,
                  slots_total: int, topo: Topology, algorithm: str, dispatch_bytes: int, combine_bytes: int,
                  scale: float = 1.0, live: np.ndarray | None = None, chunks: int = 1) -> LayerTraffic:
    """Build one layer's work and flows.

    src_gpu [N]: GPU of each routed token; dst_gpu, slot [N, k]: destination GPU and physical slot of each
    assignment; keep [N, k]: False where capacity dropped it (or padding); live [N, k]: False only for
    padding (expert-choice rows are padded), default all live. ``scale`` converts sampled tokens to real
    ones (scalable mode: real tokens per GPU / sampled tokens per GPU).
    """
    live = np.ones(keep.shape, dtype=bool) if live is None else live
    g = topo.num_gpus
    if algorithm in ("flat", "low_latency") and _flat_counts_jit is not None and g * g <= _DENSE_PAIRS:
        return _flat_compiled(src_gpu, dst_gpu, keep, slot, slots_total, topo, dispatch_bytes, combine_bytes,
                              scale, live)
    slot_tokens = np.bincount(slot[keep], minlength=slots_total).reshape(g, -1) * scale
    dst = np.where(keep, dst_gpu, -1)
    uniq_gpu = _unique_per_row(dst)  # [N, k], -1 where duplicate or dropped
    uniq_node = _unique_per_row(np.where(dst >= 0, dst // topo.gpus_per_node, -1))
    nodes_per_token = (uniq_node >= 0).sum(axis=1)
    if algorithm in ("flat", "low_latency"):  # one copy per (token, expert), straight to the expert's GPU
        dispatch, combine = _flat(src_gpu, dst, g, dispatch_bytes, combine_bytes, scale)
    else:
        dispatch, combine = _hierarchical(src_gpu, uniq_gpu, uniq_node, topo, dispatch_bytes,
                                          combine_bytes, scale, chunks)
    width = keep.shape[1] + 1
    devices_per_token = (uniq_gpu >= 0).sum(axis=1)
    return LayerTraffic(slot_tokens, dispatch, combine, copies=float(keep.sum()) * scale,
                        dropped=float((live & ~keep).sum()) * scale,
                        distinct_nodes_mean=float(nodes_per_token.mean()) if nodes_per_token.size else 0.0,
                        devices_hist=np.bincount(devices_per_token, minlength=width)[:width] * scale,
                        nodes_hist=np.bincount(nodes_per_token, minlength=width)[:width] * scale)


def _flat_compiled(src_gpu, dst_gpu, keep, slot, slots_total, topo, dispatch_bytes, combine_bytes, scale,
                   live) -> LayerTraffic:
    """``layer_traffic`` for one-hop algorithms from one compiled pass over the assignments
    (``_flat_counts_py``): the same integer counts, so the same figures, without the [N, k] temporaries."""
    g, k = topo.num_gpus, keep.shape[1]
    c = lambda a, t: np.ascontiguousarray(a, dtype=t)  # noqa: E731
    slots, pairs, hists, kept, dropped = _flat_counts_jit(
        c(src_gpu, np.int64), c(dst_gpu, np.int64), c(keep, np.bool_), c(live, np.bool_), c(slot, np.int64),
        slots_total, g, topo.gpu_tables[0])
    s, d, cnt = _from_counts(pairs, g, scale)
    n = keep.shape[0]
    nodes_total = int(np.arange(k + 1) @ hists[1])
    return LayerTraffic(slots.reshape(g, -1) * scale, _flows(s, d, cnt * dispatch_bytes, s),
                        _flows(d, s, cnt * combine_bytes, d), copies=float(kept) * scale,
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
if njit is not None:
    _add_distinct = njit(cache=True, nogil=True, inline="always")(_add_distinct)
    _flat_counts_jit = njit(cache=True, nogil=True)(_flat_counts_py)
else:  # pragma: no cover (exercised by MOESIM_NO_JIT)
    _flat_counts_jit = None
_hier_counts_jit = njit(cache=True, nogil=True)(_hier_counts_py) if njit is not None else None


def _flat(src_gpu, dst, g, dispatch_bytes, combine_bytes, scale) -> tuple[FlowSet, FlowSet]:
    src = np.broadcast_to(src_gpu[:, None], dst.shape)
    sel = (dst >= 0) & (dst != src)
    s, d, cnt = _pairs(src[sel], dst[sel], g, scale)
    return (_flows(s, d, cnt * dispatch_bytes, s), _flows(d, s, cnt * combine_bytes, d))


def _hierarchical(src_gpu, uniq_gpu, uniq_node, topo, dispatch_bytes, combine_bytes, scale, chunks=1):
    g, gpn = topo.num_gpus, topo.gpus_per_node
    if _hier_counts_jit is not None and g * g <= _DENSE_PAIRS:  # the same counts in one compiled pass
        counts = _hier_counts_jit(np.ascontiguousarray(src_gpu, dtype=np.int64), np.ascontiguousarray(uniq_gpu),
                                  np.ascontiguousarray(uniq_node), g, gpn)
        (ls, ld, lc), (ns, nd, nc), (fs, fd, fc) = (_from_counts(c, g, scale) for c in counts)
    else:
        (ls, ld, lc), (ns, nd, nc), (fs, fd, fc) = _hier_pairs(src_gpu, uniq_gpu, uniq_node, g, gpn, scale)
    ch = _Chunks(g, g // gpn, chunks)
    # DeepEP's normal kernels pipeline both hops in chunks: a relay forwards (dispatch) or sends back the
    # reduced results (combine) of a chunk once that chunk has reached it
    dispatch = FlowSet.concat([
        _flows(ls, ld, lc * dispatch_bytes, ls, feeds=np.full((ls.size, 2), -1, dtype=np.int64), owner=ch.owner),
        ch.first_hop(ns, nd, nc * dispatch_bytes, wait_node=nd // gpn),
        ch.second_hop(fs, fd, fc * dispatch_bytes),
    ])
    combine = FlowSet.concat([
        _flows(ld, ls, lc * combine_bytes, ld, feeds=np.full((ld.size, 2), -1, dtype=np.int64), owner=ch.owner),
        ch.first_hop(fd, fs, fc * combine_bytes),
        ch.second_hop(nd, ns, nc * combine_bytes),
    ])
    return dispatch, combine
