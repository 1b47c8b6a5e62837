"""Cluster topology: a networkx graph of GPUs, NVSwitches, NICs, leaf and spine switches.

Inside a node every GPU has an up and a down link to the node's NVSwitch (non-blocking switch, per-GPU
NVLink bandwidth per direction). Each GPU uses one NIC (``gpus_per_node / nics_per_node`` GPUs share one);
NIC ``i`` of every node sits on rail ``i``: rail-optimised leaves hold up to ``nodes_per_leaf`` nodes of one
rail, and all leaves meet at an aggregated spine. A leaf's uplink carries ``nodes × nic_bandwidth /
oversubscription`` per direction. Traffic between two NICs on the same leaf stays in the leaf; otherwise it
crosses the spine (DGX BasePOD rail-optimised design; cross-rail traffic goes through the spine).

With a host side (``cluster.host``, for offload) every GPU also has a host link in each direction (PCIe or
NVLink-C2C; none on unified memory), and every node a DRAM read link and an NVMe read link: expert weights
fetched from DRAM cross the node's DRAM link and the GPU's host link, from NVMe the NVMe link and the host
link, so fetches of all the node's GPUs contend where they share hardware.

Every directed edge that constrains bandwidth carries a ``link`` index into the link arrays used by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from moesim.config.schema import ClusterSpec
from moesim.hw.flows import FABRIC, FROM_DRAM, FROM_HOST, FROM_NVME, NVME_TO_DRAM, TO_HOST, FlowSet
from moesim.hw.links import Links
from moesim.util.jit import njit

MAX_HOPS = 4  # nic_up, leaf_up, leaf_down, nic_down (or nvl_up, nvl_down)


@dataclass(frozen=True)
class Topology:
    """The cluster graph plus flat arrays for fast path lookups.

    ``capacity_Bps[L]`` and ``latency_s[L]`` describe the directed links; ``paths`` maps GPU pairs to link ids.
    """

    graph: nx.DiGraph
    nodes: int
    gpus_per_node: int
    nics_per_node: int
    nodes_per_leaf: int
    capacity_Bps: np.ndarray
    latency_s: np.ndarray
    link_kind: np.ndarray  # 0 nvlink, 1 nic, 2 spine (leaf<->spine), 3 host link, 4 DRAM, 5 NVMe
    host: bool = False  # host links exist (after the fabric's: see host_base)
    unified: bool = False  # unified memory: no host link between GPU and DRAM

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def leaves_per_rail(self) -> int:
        return -(-self.nodes // self.nodes_per_leaf)

    def node_of(self, gpu: np.ndarray) -> np.ndarray:
        return np.asarray(gpu) // self.gpus_per_node

    def nic_of(self, gpu: np.ndarray) -> np.ndarray:
        """Global NIC index of each GPU's NIC: node · nics_per_node + rail."""
        gpu = np.asarray(gpu)
        rail = (gpu % self.gpus_per_node) // (self.gpus_per_node // self.nics_per_node)
        return (gpu // self.gpus_per_node) * self.nics_per_node + rail

    def leaf_of_nic(self, nic: np.ndarray) -> np.ndarray:
        nic = np.asarray(nic)
        rail, node = nic % self.nics_per_node, nic // self.nics_per_node
        return rail * self.leaves_per_rail + node // self.nodes_per_leaf

    def paths(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Link ids on the path of each (src GPU, dst GPU) pair: int array [F, MAX_HOPS], -1 padded.

        Same GPU: no links. Same node: NVLink up, NVLink down. Else: NIC up, (leaf up, leaf down when
        the NICs sit on different leaves), NIC down.
        """
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        g, nn = self.num_gpus, self.nodes * self.nics_per_node
        if _paths_jit is not None:  # the same ids in one compiled pass (a 10,000-GPU phase: 5.5 s -> 0.3 s)
            node, nic, leaf = self.gpu_tables
            return _paths_jit(np.ascontiguousarray(src), np.ascontiguousarray(dst), node, nic, leaf, g, nn,
                              self.leaves)
        out = np.full((src.size, MAX_HOPS), -1, dtype=np.int64)
        same_node = (self.node_of(src) == self.node_of(dst)) & (src != dst)
        out[same_node, 0] = src[same_node]  # nvl_up ids: 0..g-1
        out[same_node, 1] = g + dst[same_node]  # nvl_down ids: g..2g-1
        net = self.node_of(src) != self.node_of(dst)
        sn, dn = self.nic_of(src[net]), self.nic_of(dst[net])
        sl, dl = self.leaf_of_nic(sn), self.leaf_of_nic(dn)
        cross = sl != dl
        base = 2 * g + 2 * nn
        out[net, 0] = 2 * g + sn
        out[net, 1] = np.where(cross, base + sl, 2 * g + nn + dn)
        out[net, 2] = np.where(cross, base + self.leaves + dl, -1)
        out[net, 3] = np.where(cross, 2 * g + nn + dn, -1)
        return out

    @cached_property
    def gpu_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Node, global NIC and leaf of every GPU [G] int64: the compiled ``paths`` looks them up instead of
        dividing (integer division by a value known only at run time was most of its time)."""
        gpu = np.arange(self.num_gpus, dtype=np.int64)
        nic = self.nic_of(gpu)
        return self.node_of(gpu), nic, self.leaf_of_nic(nic)

    @property
    def leaves(self) -> int:
        return self.nics_per_node * self.leaves_per_rail

    @property
    def host_base(self) -> int:
        """First host link id: h2d[g], d2h[g], dram[node], nvme[node] follow the fabric's links."""
        return 2 * self.num_gpus + 2 * self.nodes * self.nics_per_node + 2 * self.leaves

    def flow_paths(self, f: FlowSet) -> np.ndarray:
        """Link ids [F, MAX_HOPS] of a flow set: fabric flows as ``paths``, host-side ones by their tier."""
        if f.tier is None or not np.any(f.tier != FABRIC):
            return self.paths(f.src, f.dst)
        if not self.host:
            raise ValueError("host-side flows need a cluster with a host (cluster.host)")
        out = self.paths(f.src, f.dst)
        tier, gpu = f.tier, np.asarray(f.dst, dtype=np.int64)
        g, b, node = self.num_gpus, self.host_base, self.node_of(gpu)
        h2d, d2h = [] if self.unified else [b + gpu], [] if self.unified else [b + g + gpu]  # one memory: none
        dram, nvme = [b + 2 * g + node], [b + 2 * g + self.nodes + node]
        for code, hops in ((FROM_DRAM, dram + h2d), (FROM_NVME, nvme + h2d), (TO_HOST, d2h), (FROM_HOST, h2d),
                           (NVME_TO_DRAM, nvme)):
            rows = tier == code
            if rows.any():
                out[rows] = -1
                for col, hop in enumerate(hops):
                    out[rows, col] = hop[rows]
        return out


def _paths_py(src, dst, node, nic, leaf, g, nn, leaves):
    """``Topology.paths`` one flow at a time (compiled with numba when installed); node, nic, leaf [G]: each
    GPU's (``Topology.gpu_tables``)."""
    out = np.full((src.size, MAX_HOPS), -1, dtype=np.int64)
    for i in range(src.size):
        s, d = src[i], dst[i]
        if node[s] == node[d]:
            if s != d:
                out[i, 0], out[i, 1] = s, g + d
            continue
        sn, dn, sl, dl = nic[s], nic[d], leaf[s], leaf[d]
        out[i, 0] = 2 * g + sn
        if sl != dl:
            base = 2 * g + 2 * nn
            out[i, 1], out[i, 2], out[i, 3] = base + sl, base + leaves + dl, 2 * g + nn + dn
        else:
            out[i, 1] = 2 * g + nn + dn
    return out


_paths_jit = njit(cache=True, nogil=True)(_paths_py) if njit is not None else None


def build_topology(c: ClusterSpec) -> Topology:
    """Build the graph and link arrays from a validated cluster section."""
    gpn, nodes = c.gpus_per_node, c.nodes
    lk = Links.of(c)
    nics = lk.nics_per_node
    nvl_bw, nvl_lat, nic_bw, nic_lat = lk.nvlink_Bps, lk.nvlink_latency_s, lk.nic_Bps, lk.nic_latency_s
    per_leaf = min(c.inter_node.nodes_per_leaf, nodes)
    topo = Topology(nx.DiGraph(), nodes, gpn, nics, per_leaf, np.zeros(0), np.zeros(0), np.zeros(0))
    g, nn, lv = nodes * gpn, nodes * nics, topo.leaves
    cap, lat, kind = np.zeros(2 * g + 2 * nn + 2 * lv), np.zeros(2 * g + 2 * nn + 2 * lv), np.zeros(
        2 * g + 2 * nn + 2 * lv, dtype=np.int8)
    graph = topo.graph

    # route_cost encodes the routing rule for shortest-path queries: a GPU's inter-node traffic leaves
    # through its own NIC (no PXN relay over NVLink), so NVLink hops cost more than PCIe/NIC hops.
    def link(u: str, v: str, idx: int, bw: float, latency: float, k: int) -> None:
        graph.add_edge(u, v, link=idx, bandwidth_Bps=bw, latency_s=latency, route_cost=1.5 if k == 0 else 1.0)
        cap[idx], lat[idx], kind[idx] = bw, latency, k

    for gpu in range(g):
        node, nic = gpu // gpn, int(topo.nic_of(gpu))
        link(f"gpu{gpu}", f"nvswitch{node}", gpu, nvl_bw, nvl_lat, 0)
        link(f"nvswitch{node}", f"gpu{gpu}", g + gpu, nvl_bw, nvl_lat, 0)
        graph.add_edge(f"gpu{gpu}", f"nic{nic}", link=-1, route_cost=0.0)  # PCIe: not a bottleneck
        graph.add_edge(f"nic{nic}", f"gpu{gpu}", link=-1, route_cost=0.0)
    for nic in range(nn):
        leaf = int(topo.leaf_of_nic(nic))
        link(f"nic{nic}", f"leaf{leaf}", 2 * g + nic, nic_bw, nic_lat, 1)
        link(f"leaf{leaf}", f"nic{nic}", 2 * g + nn + nic, nic_bw, 0.0, 1)
    for leaf in range(lv):
        members = int(np.sum(topo.leaf_of_nic(np.arange(nn)) == leaf))
        up_bw = max(members, 1) * nic_bw / c.inter_node.oversubscription
        link(f"leaf{leaf}", "spine", 2 * g + 2 * nn + leaf, up_bw, 0.0, 2)
        link("spine", f"leaf{leaf}", 2 * g + 2 * nn + lv + leaf, up_bw, 0.0, 2)
    if c.host is None:
        return Topology(graph, nodes, gpn, nics, per_leaf, cap, lat, kind)
    cap, lat, kind = _host_links(c, graph, cap, lat, kind)
    return Topology(graph, nodes, gpn, nics, per_leaf, cap, lat, kind, True, c.host.unified)


def _host_links(c: ClusterSpec, graph: nx.DiGraph, cap: np.ndarray, lat: np.ndarray, kind: np.ndarray):
    """Append the host links (per GPU: h2d, d2h; per node: DRAM read, NVMe read) to the link arrays."""
    h, g, nodes, b = c.host, c.num_gpus, c.nodes, cap.size
    host_bw = np.full(g, h.host_link_bandwidth)
    cap = np.concatenate([cap, host_bw, host_bw, np.full(nodes, h.dram_bandwidth),
                          np.full(nodes, h.nvme_read_bandwidth)])
    lat = np.concatenate([lat, np.full(2 * g, h.host_link_latency), np.zeros(nodes), np.full(nodes, h.nvme_latency)])
    kind = np.concatenate([kind, np.full(2 * g, 3), np.full(nodes, 4), np.full(nodes, 5)]).astype(np.int8)
    for gpu in range(g):
        node = gpu // c.gpus_per_node
        graph.add_edge(f"host{node}", f"gpu{gpu}", link=b + gpu, bandwidth_Bps=h.host_link_bandwidth,
                       latency_s=h.host_link_latency, route_cost=1.0)
        graph.add_edge(f"gpu{gpu}", f"host{node}", link=b + g + gpu, bandwidth_Bps=h.host_link_bandwidth,
                       latency_s=h.host_link_latency, route_cost=1.0)
    for node in range(nodes):
        graph.add_edge(f"dram{node}", f"host{node}", link=b + 2 * g + node, bandwidth_Bps=h.dram_bandwidth,
                       latency_s=0.0, route_cost=1.0)
        graph.add_edge(f"nvme{node}", f"host{node}", link=b + 2 * g + nodes + node,
                       bandwidth_Bps=h.nvme_read_bandwidth, latency_s=h.nvme_latency, route_cost=1.0)
    return cap, lat, kind
