"""Flows on the topology: what a communication stage moves, and on which tier (fabric, host memory, NVMe).

Below the stage programs: the topology routes flow sets, the all-to-all algorithms build them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# FlowSet.tier: where a flow runs (the cluster fabric, or between a GPU and its node's host memory / NVMe)
FABRIC, FROM_DRAM, FROM_NVME, TO_HOST, FROM_HOST, NVME_TO_DRAM = range(6)


@dataclass(frozen=True)
class FlowSet:
    """Aggregated flows of one communication stage. All arrays [F]; bytes.

    gate: the flow may start once GPU ``gate`` has joined the stage (``gate < G``), once every GPU of node
    ``gate - G`` has (``G ≤ gate < G + N``), or once arrival gate ``a = gate - G - N`` has opened: every flow
    that ``feeds`` it has arrived and its owner GPU ``arrival_owner[a]`` (if ≥ 0) has joined (chunked
    forwarding: a relay forwards a chunk once that chunk has reached it). wait_node: GPUs of this node (-1:
    none) also wait for the flow, besides its source and destination (hierarchical dispatch: a GPU's tokens
    reach it through all of its node's relays). feeds [F, 2]: arrival gates (-1: none) the flow's arrival
    counts towards; arrival_owner [A].
    tier [F] (None: all 0): 0 GPU ``src`` to GPU ``dst`` on the cluster fabric; a host-side transfer for
    GPU ``src`` (= ``dst``, the GPU that issues and waits for it): ``FROM_DRAM``, ``FROM_NVME`` (expert
    weights into GPU memory), ``TO_HOST``, ``FROM_HOST`` (activations to and from CPU experts),
    ``NVME_TO_DRAM`` (weights a CPU expert needs); paths in ``Topology.flow_paths``.
    """

    src: np.ndarray
    dst: np.ndarray
    nbytes: np.ndarray
    gate: np.ndarray
    wait_node: np.ndarray
    feeds: np.ndarray | None = None
    arrival_owner: np.ndarray | None = None
    tier: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.src.size)

    @property
    def arrival_gates(self) -> int:
        return 0 if self.arrival_owner is None else int(self.arrival_owner.size)

    def feeds_or_none(self) -> np.ndarray:
        """feeds [F, 2], -1 filled when the flows feed no arrival gate."""
        return self.feeds if self.feeds is not None else np.full((self.size, 2), -1, dtype=np.int64)

    @staticmethod
    def concat(parts: list[FlowSet]) -> FlowSet:
        """One flow set; parts with arrival gates must share one ``arrival_owner`` table."""
        owners = [p.arrival_owner for p in parts if p.arrival_owner is not None]
        if any(o.size != owners[0].size or not np.array_equal(o, owners[0]) for o in owners[1:]):
            raise ValueError("concatenated flow sets disagree on their arrival gates")
        feeds = np.concatenate([p.feeds_or_none() for p in parts]) if owners else None
        tier = np.concatenate([p.tiers() for p in parts]) if any(p.tier is not None for p in parts) else None
        return FlowSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("src", "dst", "nbytes", "gate", "wait_node")), feeds, owners[0] if owners else None,
                       tier)

    def tiers(self) -> np.ndarray:
        """tier [F], zeros when the flows are all on the cluster fabric."""
        return self.tier if self.tier is not None else np.zeros(self.size, dtype=np.int8)

    def intra_node(self, gpus_per_node: int) -> np.ndarray:
        """[F] bool: fabric flows inside one node (NVLink), the ones an all-to-all kernel's rate applies to."""
        same = self.src // gpus_per_node == self.dst // gpus_per_node
        return same if self.tier is None else same & (self.tier == FABRIC)

    @staticmethod
    def host(gpu: np.ndarray, nbytes: np.ndarray, tier: int) -> FlowSet:
        """Host-side transfers of one ``tier`` for each GPU in ``gpu`` [F] (bytes [F])."""
        gpu = np.asarray(gpu, dtype=np.int64)
        return FlowSet(gpu, gpu.copy(), np.asarray(nbytes, dtype=np.float64), gpu.copy(),
                       np.full(gpu.size, -1, dtype=np.int64), tier=np.full(gpu.size, tier, dtype=np.int8))

    @staticmethod
    def point_to_point(src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> FlowSet:
        """Flows that start when their source joins and that only their two ends wait for."""
        src = np.asarray(src, dtype=np.int64)
        return FlowSet(src, np.asarray(dst, dtype=np.int64), np.asarray(nbytes, dtype=np.float64), src.copy(),
                       np.full(src.size, -1, dtype=np.int64))

    def reversed(self, scale: float = 1.0) -> FlowSet:
        """The same pairs in the other direction (bytes × ``scale``); the new source may start at once."""
        return FlowSet.point_to_point(self.dst, self.src, self.nbytes * scale)
