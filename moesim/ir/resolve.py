"""The one resolve step: figures derived from a validated scenario, computed once and read by every
consumer (build, programs, training, topology, memory, summaries) instead of being re-derived in each.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# SMs DeepEP's normal kernels hold: its README's example sets ``Buffer.set_num_sms(24)`` (an example
# setting, not a measurement: "estimated"). Its low-latency kernels hold none while data moves (the
# receive hook "without any SM occupation"). NCCL-style flat kernels: unknown, 0.
DEEPEP_NORMAL_SMS = 24


def algorithm_of(s: Scenario) -> str:
    """comm.algorithm with ``auto`` resolved the way serving engines choose per phase (SGLang's
    ``--deepep-mode auto``): low-latency kernels for decode, normal (hierarchical) ones otherwise."""
    if s.comm.algorithm != "auto":
        return s.comm.algorithm
    return "low_latency" if s.workload.mode == "decode" else "hierarchical"


def default_sm_share(algorithm: str, sms: int) -> tuple[float, str]:
    """(share of the GPU's SMs held by dispatch/combine, label) when the scenario sets none."""
    if algorithm == "hierarchical":
        return min(DEEPEP_NORMAL_SMS / sms, 0.5), f"estimated: DeepEP normal kernels, {DEEPEP_NORMAL_SMS} of {sms} SMs"
    if algorithm == "low_latency":
        return 0.0, "published: DeepEP low-latency receive holds no SMs"
    return 0.0, "estimated: none"


def resolve(s: Scenario) -> Resolved:
    """Derive the shared figures of scenario ``s`` (pure; cheap)."""
    m = s.model
    model = MoEModel.from_spec(m)
    algorithm = algorithm_of(s)
    share, source = (s.comm.sm_share, "scenario") if s.comm.sm_share is not None else \
        default_sm_share(algorithm, s.cluster.gpu.sms)
    return Resolved(
        scenario=s, model=model, routing=RoutingParams.from_scenario(s),
        links=Links.of(s.cluster, s.comm.layout_exchange and algorithm != "low_latency", algorithm),
        has_attention_shape=m.has_attention_shape, expert_bytes=float(model.expert_weight_bytes),
        dispatch_copy_bytes=copy_bytes(model.hidden, s.comm.dispatch_dtype),
        combine_copy_bytes=copy_bytes(model.hidden, s.comm.combine_dtype),
        compute_slowdown=1.0 / (1.0 - s.comm.reserved_compute_fraction),
        algorithm=algorithm, sm_share=share, sm_share_source=source)
