"""The gate semantics of a communication stage, shared by the event-driven interpreter (``phase.CommPhase``)
and the lockstep engine (``lockstep._Gates``): one definition of when a flow may start.

A flow's ``gate`` (``FlowSet``) names a gate group:
- ``k < G``: GPU k has joined the stage and paid the stage's start-up latency;
- ``G ≤ k < G + N``: every GPU of node k − G has (hierarchical forwarding waits for the whole node);
- ``k ≥ G + N``: arrival gate a = k − G − N, open once every flow that ``feeds`` it has arrived and its owner
  GPU (``arrival_owner[a]``, if ≥ 0) has joined and paid its start-up (chunked forwarding: a relay forwards
  a chunk once that chunk has reached it).
The all-to-all algorithms (``moesim.comm``) choose each flow's gate; the engines only apply this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.hw.flows import FlowSet


@dataclass(frozen=True)
class GateLayout:
    """Gate groups of one stage. feeds [F, 2]: arrival gates each flow counts towards (-1: none);
    fed [A]: flows feeding each arrival gate; owner [A]: each arrival gate's owner GPU (-1: none)."""

    gpus: int
    nodes: int
    feeds: np.ndarray
    fed: np.ndarray
    owner: np.ndarray

    @classmethod
    def of(cls, flows: FlowSet, gpus: int, gpus_per_node: int) -> GateLayout:
        a = flows.arrival_gates
        feeds = flows.feeds_or_none()
        owner = flows.arrival_owner if a else np.zeros(0, dtype=np.int64)
        return cls(gpus, gpus // gpus_per_node, feeds, np.bincount(feeds[feeds >= 0], minlength=a), owner)

    @property
    def first_arrival(self) -> int:
        """Gate-group id of arrival gate 0 (G + N)."""
        return self.gpus + self.nodes

    @property
    def arrival_gates(self) -> int:
        return int(self.owner.size)

    @property
    def groups(self) -> int:
        return self.first_arrival + self.arrival_gates

    def dependencies(self) -> np.ndarray:
        """What each arrival gate waits for [A]: its feeding flows, plus its owner's start-up if it has one."""
        return self.fed + (self.owner >= 0)


def open_times(join: np.ndarray, base: float, gpus_per_node: int) -> tuple[np.ndarray, np.ndarray]:
    """When each GPU's gate group opens [G] (its join plus the start-up ``base``) and each node's [N] (its
    last GPU's), for GPUs that joined at ``join`` [G] (s)."""
    opened = join + base
    return opened, opened.reshape(-1, gpus_per_node).max(axis=1)
