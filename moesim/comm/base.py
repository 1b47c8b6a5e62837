"""The all-to-all interface: an algorithm turns one layer's (token, expert) assignments into the flows of
dispatch and combine, with their gates, and says what its kernels cost to start and which SMs they hold.
Algorithms are classes behind this one interface (as ASTRA-sim's collectives are), kept in ``ALGORITHMS``;
a new one is one module and one ``ALGORITHMS.register`` (docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from moesim.config.schema import ClusterSpec
from moesim.hw.flows import FlowSet
from moesim.hw.topology import Topology
from moesim.util.registry import Registry


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


@dataclass(frozen=True)
class Assignments:
    """One layer's routed copies, as the traffic builder prepares them. src_gpu [N]: each routed token's GPU;
    dst [N, k]: destination GPU of each kept assignment, -1 where dropped; uniq_gpu, uniq_node [N, k]: the
    distinct destination GPUs and nodes of each token (-1 filled)."""

    src_gpu: np.ndarray
    dst: np.ndarray
    uniq_gpu: np.ndarray
    uniq_node: np.ndarray


class AllToAll(ABC):
    """An all-to-all algorithm (DeepEP's normal or low-latency kernels, NCCL-style one-hop sends, ...).

    one_hop: every copy goes straight from the token's GPU to the expert's (the compiled one-pass counter
    applies). layout_exchange: dispatch exchanges the layout first (DeepEP's notify), one more start-up when
    ``comm.layout_exchange`` is on.
    """

    name = ""
    one_hop = True
    layout_exchange = True

    @abstractmethod
    def flows(self, a: Assignments, topo: Topology, dispatch_bytes: int, combine_bytes: int, scale: float,
              chunks: int = 1) -> tuple[FlowSet, FlowSet]:
        """(dispatch, combine) flows with their gates (``FlowSet``); bytes × ``scale`` (sampled to real)."""

    def default_sm_share(self, sms: int) -> tuple[float, str]:
        """(share of the GPU's SMs dispatch/combine hold while in flight, its label) when the scenario sets
        none (``comm.sm_share``)."""
        return 0.0, "estimated: none"

    def startups(self, c: ClusterSpec, layout_exchange: bool) -> tuple[float, float]:
        """(dispatch, combine) start-up latency in s: the GPU's measured start-ups of this algorithm's kernels
        (``a2a_startup``) when it has them, else the collective latency (twice for dispatch when it
        exchanges the layout first)."""
        lat = c.gpu.collective_latency
        measured = (c.gpu.a2a_startup or {}).get(self.name)
        if measured:
            return measured[0], measured[1]
        return (2 * lat if layout_exchange and self.layout_exchange else lat), lat

    def nvlink_scale(self, c: ClusterSpec) -> float:
        """NVLink bytes/s over the rate this algorithm's kernels reach inside a node (``a2a_nvlink_bandwidth``;
        1 when unmeasured or when the scenario overrides the NVLink figure)."""
        reached = (c.gpu.a2a_nvlink_bandwidth or {}).get(self.name)
        nvlink = c.intra_node.bandwidth or c.gpu.nvlink_bandwidth
        return nvlink / reached if reached and not c.intra_node.bandwidth else 1.0


ALGORITHMS: Registry[AllToAll] = Registry("all-to-all algorithm", "comm.algorithm")


def algorithm_for(name: str, mode: str) -> str:
    """``comm.algorithm`` with ``auto`` resolved the way serving engines choose per phase (SGLang's
    ``--deepep-mode auto``): low-latency kernels for decode, normal (hierarchical) ones otherwise."""
    if name != "auto":
        return name
    return "low_latency" if mode == "decode" else "hierarchical"
