"""The one resolve step: figures derived from a validated scenario, computed once and read by every
consumer (build, programs, training, topology, memory, summaries) instead of being re-derived in each.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.config.schema import ClusterSpec, Scenario
from moesim.model import MoEModel, copy_bytes
from moesim.routing.params import RoutingParams


@dataclass(frozen=True)
class Links:
    """Link figures after the scenario's overrides of the GPU's defaults (bytes/s, seconds)."""

    nvlink_Bps: float
    nvlink_latency_s: float
    nic_Bps: float
    nic_latency_s: float
    nics_per_node: int
    collective_latency_s: float  # one collective's start-up latency
    dispatch_latency_s: float  # dispatch's: one more start-up with a layout exchange (DeepEP notify)

    @classmethod
    def of(cls, c: ClusterSpec, layout_exchange: bool = False) -> Links:
        lat = c.gpu.collective_latency
        return cls(
            nvlink_Bps=c.intra_node.bandwidth or c.gpu.nvlink_bandwidth,
            nvlink_latency_s=c.intra_node.latency if c.intra_node.latency is not None else c.gpu.nvlink_latency,
            nic_Bps=c.inter_node.nic_bandwidth or c.gpu.nic_bandwidth,
            nic_latency_s=c.inter_node.latency if c.inter_node.latency is not None else c.gpu.nic_latency,
            nics_per_node=c.inter_node.nics_per_node or c.gpus_per_node,
            collective_latency_s=lat, dispatch_latency_s=2 * lat if layout_exchange else lat)


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
    return Resolved(
        scenario=s, model=model, routing=RoutingParams.from_scenario(s),
        links=Links.of(s.cluster, s.comm.layout_exchange),
        has_attention_shape=m.has_attention_shape, expert_bytes=float(model.expert_weight_bytes),
        dispatch_copy_bytes=copy_bytes(model.hidden, s.comm.dispatch_dtype),
        combine_copy_bytes=copy_bytes(model.hidden, s.comm.combine_dtype),
        compute_slowdown=1.0 / (1.0 - s.comm.reserved_compute_fraction))
