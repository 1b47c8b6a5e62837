"""The one resolve step: figures derived from a validated scenario, computed once and read by every
consumer (build, programs, training, topology, memory, summaries) instead of being re-derived in each.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.comm import ALGORITHMS, algorithm_for
from moesim.config.schema import Scenario
from moesim.hw.links import Links
from moesim.model.moe import MoEModel, copy_bytes
from moesim.routing.params import RoutingParams


@dataclass(frozen=True)
class Resolved:
    """Everything derived from the scenario that more than one module needs."""

    scenario: Scenario
    model: MoEModel
    routing: RoutingParams
    links: Links
    has_attention_shape: bool
    expert_bytes: float  # one routed expert's weights (3·H·F × bytes per parameter)
    dispatch_copy_bytes: int  # one token copy on the wire, dispatch (scales included)
    combine_copy_bytes: int
    compute_slowdown: float  # 1 / (1 − comm.reserved_compute_fraction): SMs reserved for communication
    algorithm: str = "hierarchical"  # comm.algorithm with ``auto`` resolved for the workload's phase
    sm_share: float = 0.0  # comm.sm_share, or the algorithm's default
    sm_share_source: str = "scenario"

    @property
    def whole_model(self) -> bool:
        return self.scenario.workload.scope == "whole_model"

    @property
    def training(self) -> bool:
        return self.scenario.workload.mode == "training"


def resolve(s: Scenario) -> Resolved:
    """Derive the shared figures of scenario ``s`` (pure; cheap)."""
    m = s.model
    model = MoEModel.from_spec(m)
    algorithm = algorithm_for(s.comm.algorithm, s.workload.mode)
    alg = ALGORITHMS.get(algorithm)
    share, source = (s.comm.sm_share, "scenario") if s.comm.sm_share is not None else \
        alg.default_sm_share(s.cluster.gpu.sms)
    return Resolved(
        scenario=s, model=model, routing=RoutingParams.from_scenario(s),
        links=Links.of(s.cluster, alg.startups(s.cluster, s.comm.layout_exchange), alg.nvlink_scale(s.cluster)),
        has_attention_shape=m.has_attention_shape, expert_bytes=float(model.expert_weight_bytes),
        dispatch_copy_bytes=copy_bytes(model.expert_hidden, s.comm.dispatch_dtype),
        combine_copy_bytes=copy_bytes(model.expert_hidden, s.comm.combine_dtype),
        compute_slowdown=1.0 / (1.0 - s.comm.reserved_compute_fraction),
        algorithm=algorithm, sm_share=share, sm_share_source=source)
