"""The engine's input: every pass through a layer is a small program of named stages.

A neutral module: ``build``, ``programs``, ``training`` and the engine import it; it imports none of them.
The flows a ``Comm`` stage moves are ``moesim.hw.flows.FlowSet``s.

- ``Compute``: seconds per GPU [G] on one of the GPU's resources (``SM``: the compute units; ``COPY``: the
  copy engines; ``HOST``: the host CPU). Stages on one resource of one GPU run one at a time, first come
  first served, so two programs on one GPU (two-batch overlap) interleave for real.
- ``Comm``: flows on the topology (``FlowSet``). Each GPU joins when it reaches the stage, pays the
  start-up ``latency_s`` (launch, notify) before its flows move, and leaves when every flow it sends,
  receives or relays has finished (and no sooner than ``latency_s`` after it joined).
  ``sm_share``: share of the GPU's SMs the communication kernel holds while the GPU is in the stage;
  compute overlapping it runs at (1 − held share) of its speed.
- ``Parallel``: branches that run side by side; the stage after it starts when every branch has ended.

Vocabulary of stage names (records and summaries use them): attention_proj, attention_core, norms,
dense_ffn, tp_allreduce,
router, permute, dispatch, shared_experts, routed_experts, regroup, combine, unpermute, head; backward
stages carry a ``bwd_`` prefix; gradient_sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.hw.flows import FlowSet

SM, COPY, HOST = "sm", "copy_engine", "host_cpu"
RESOURCES = (SM, COPY, HOST)
@dataclass(frozen=True)
class Compute:
    """``seconds`` [G] of work for every GPU on its ``resource``."""

    name: str
    seconds: np.ndarray
    resource: str = SM


@dataclass(frozen=True)
class Comm:
    """Flows that every GPU takes part in (see the module docstring for join, leave and ``sm_share``)."""

    name: str
    flows: FlowSet
    latency_s: float = 0.0
    sm_share: float = 0.0
    # the stage's flows inside a node move at 1 / nvlink_scale of the NVLink capacity (an all-to-all kernel
    # that reaches less than the link figure, as measured): bytes on the wire are scaled, records are not
    nvlink_scale: float = 1.0


@dataclass(frozen=True)
class Parallel:
    """Branches (each a sequence of stages) run side by side."""

    branches: tuple[tuple[Stage, ...], ...]


Stage = Compute | Comm | Parallel


def leaves(stages: tuple[Stage, ...]) -> list[Compute | Comm]:
    """The compute and communication stages in program order (branches depth-first, in order)."""
    out: list[Compute | Comm] = []
    for st in stages:
        if isinstance(st, Parallel):
            for branch in st.branches:
                out.extend(leaves(branch))
        else:
            out.append(st)
    return out


@dataclass(frozen=True)
class Program:
    """One pass through one layer on every GPU: ``stages`` in sequence.

    layer: the MoE layer's index (0-based); block: its block in the model; pass_: forward | backward;
    step: the gradient-accumulation step (training)."""

    stages: tuple[Stage, ...]
    layer: int
    block: int
    pass_: str = "forward"
    step: int = 0

    @property
    def leaves(self) -> list[Compute | Comm]:
        return leaves(self.stages)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(st.name for st in self.leaves)

    def comm(self, name: str) -> Comm | None:
        """The first communication stage called ``name`` (None if the program has none)."""
        return next((st for st in self.leaves if isinstance(st, Comm) and st.name == name), None)
