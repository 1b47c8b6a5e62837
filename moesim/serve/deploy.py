"""Deployment shapes: which GPUs form which instance (one EP group each) and what each instance can hold.

aggregated: the cluster's GPUs split into instances of ``ep_gpus``; each prefills and decodes.
disaggregated: the first ``prefill.gpus`` GPUs serve prefill, the next ``decode.gpus`` decode; each side
splits into instances of its ``ep_gpus``. An instance's iteration is simulated as its own cluster of
``ep_gpus`` GPUs (whole nodes, or part of one node when ``ep_gpus < gpus_per_node``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moesim.config.schema import Scenario
from moesim.config.serving import SideSpec
from moesim.iteration.checks import check_scenario
from moesim.model.layers import kv_bytes_all_blocks, state_bytes_all_blocks
from moesim.model.memory import kv_bytes_per_cached_token, memory_per_gpu
from moesim.offload.tiers import kv_room_bytes
from moesim.serve.engines import ENGINES, Scheduling, scheduling
from moesim.serve.policies import SCHEDULERS
from moesim.util.errors import ScenarioError


@dataclass(frozen=True)
class Role:
    """Instances of one kind. ``scenario`` is one instance's iteration scenario (its EP group).
    kv_tokens: KV-cache tokens one instance holds (inf when memory is not modelled)."""

    name: str  # aggregated | prefill | decode
    scenario: Scenario
    instances: int
    gpus_per_instance: int
    first_gpu: int  # global index of the role's first GPU
    kv_tokens: float
    max_running: int  # sequences per instance (max_batch x GPUs, or the engine's per rank x ranks)
    prefill_budget: int  # tokens per iteration per instance (token_budget x GPUs, or the engine's)
    sched: Scheduling  # the instance's scheduler (policy, admission, CUDA graphs, chunking)

    @property
    def prefills(self) -> bool:
        return self.name != "decode"

    @property
    def decodes(self) -> bool:
        return self.name != "prefill"

    def gpu(self, instance: int, rank: int) -> int:
        """Global GPU index of ``rank`` inside ``instance``."""
        return self.first_gpu + instance * self.gpus_per_instance + rank


@dataclass(frozen=True)
class Deployment:
    kind: str
    roles: tuple[Role, ...]
    world_gpus: int
    kv_bytes_per_token: float  # bytes of one sequence token's KV cache, all blocks (what a transfer moves)

    def role(self, name: str) -> Role:
        return next(r for r in self.roles if r.name == name)


def deployment_of(s: Scenario) -> Deployment:
    """Resolve ``serving.deployment`` against the scenario's cluster; ScenarioError on an impossible shape or
    an unknown scheduling policy."""
    if s.serving.scheduler.policy not in SCHEDULERS:
        raise ScenarioError(SCHEDULERS.unknown(s.serving.scheduler.policy), path="serving.scheduler.policy",
                            fix="prefill_first is SGLang's default")
    if s.serving.engine is not None and s.serving.engine not in ENGINES:
        raise ScenarioError(ENGINES.unknown(s.serving.engine), path="serving.engine",
                            fix="`moesim list engines` lists them")
    d = s.serving.deployment
    world = s.cluster.num_gpus
    if d.kind == "aggregated":
        side = SideSpec(gpus=world, ep_gpus=d.ep_gpus, redundant_experts=d.redundant_experts)
        roles = (_role(s, "aggregated", side, 0, "serving.deployment"),)
    else:
        used = d.prefill.gpus + d.decode.gpus
        if used > world:
            raise ScenarioError(f"prefill {d.prefill.gpus} + decode {d.decode.gpus} GPUs exceed the cluster's "
                                f"{world}", path="serving.deployment", fix=f"use at most {world} GPUs in all, or "
                                "more cluster.nodes")
        roles = (_role(s, "prefill", d.prefill, 0, "serving.deployment.prefill"),
                 _role(s, "decode", d.decode, d.prefill.gpus, "serving.deployment.decode"))
    per_token = kv_bytes_all_blocks(s.model) if s.model.has_attention_shape else 0.0
    return Deployment(d.kind, roles, world, per_token)


def _role(s: Scenario, name: str, side: SideSpec, first: int, where: str) -> Role:
    g = side.ep_gpus or side.gpus
    gpn = s.cluster.gpus_per_node
    if side.gpus % g:
        raise ScenarioError(f"{side.gpus} GPUs do not split into instances of {g}", path=f"{where}.ep_gpus",
                            fix="use an ep_gpus that divides the GPU count")
    if (g >= gpn and g % gpn) or (g < gpn and gpn % g):
        raise ScenarioError(f"an instance of {g} GPUs is neither whole nodes of {gpn} nor an even part of one",
                            path=f"{where}.ep_gpus", fix=f"use a multiple or a divisor of {gpn}")
    if name != "aggregated" and (first % gpn or side.gpus % gpn) and side.gpus >= gpn:
        raise ScenarioError(f"{side.gpus} GPUs is not whole nodes of {gpn}", path=f"{where}.gpus",
                            fix=f"use a multiple of {gpn} GPUs per side")
    sc = instance_scenario(s, g, side)
    try:
        check_scenario(sc)
    except ScenarioError as err:
        raise ScenarioError(f"an instance of {g} GPUs: {err.problem}", path=f"{where} ({err.path})",
                            fix=err.fix) from None
    spec = s.serving.scheduler
    if side.scheduler is not None:  # the side's own flags win
        spec = spec.model_copy(update={k: getattr(side.scheduler, k) for k in side.scheduler.model_fields_set})
    sched = scheduling(spec, s.serving.engine, g, sc.workload.attention_tp)
    # activations are sized by the largest batch one iteration may run per GPU
    probe = (spec.max_batch if s.serving.engine is None and spec.max_running is None else
             max(1, min(sched.max_running, sched.budget) // g))
    cap = kv_capacity_tokens_per_gpu(sc, probe, spec.kv_memory_fraction)
    if cap is not None and cap < 1:
        raise ScenarioError(f"weights, buffers and activations fill the {sc.cluster.gpu.name} HBM: no room for a "
                            "KV cache", path=f"{where}.ep_gpus",
                            fix="use more GPUs per instance (fewer experts per GPU) or a smaller max_batch")
    kv = math.inf if cap is None else math.floor(cap) * g
    return Role(name, sc, side.gpus // g, g, first, kv, sched.max_running, sched.budget, sched)


def instance_scenario(s: Scenario, gpus: int, side: SideSpec) -> Scenario:
    """The iteration scenario of one instance of ``gpus`` GPUs (its cluster cut to those GPUs)."""
    gpn = s.cluster.gpus_per_node
    cluster = s.cluster.model_copy(update={"nodes": max(1, gpus // gpn), "gpus_per_node": min(gpus, gpn)})
    nics = cluster.inter_node.nics_per_node
    if nics and nics > cluster.gpus_per_node:
        cluster = cluster.model_copy(update={"inter_node": cluster.inter_node.model_copy(
            update={"nics_per_node": cluster.gpus_per_node})})
    wl = {k: v for k, v in (("attention_tp", side.attention_tp), ("moe_tp", side.moe_tp),
                            ("micro_batches", side.micro_batches)) if v is not None}
    placement = s.placement if side.redundant_experts is None else s.placement.model_copy(
        update={"redundant_experts": side.redundant_experts})
    return s.model_copy(update={"cluster": cluster, "serving": None, "placement": placement,
                                "workload": s.workload.model_copy(update=wl)})


def kv_capacity_tokens_per_gpu(s: Scenario, max_batch: int, fraction: float) -> float | None:
    """Tokens of KV cache one GPU can hold when ``max_batch`` sequences run on it: ``fraction`` of the HBM
    left after weights, dispatch buffers and activations (memory_per_gpu's terms), over the bytes per cached
    token. None when the model gives no attention shape (memory not modelled); 0 when nothing is left."""
    probe = s.model_copy(update={"workload": s.workload.model_copy(
        update={"mode": "decode", "tokens_per_gpu": max_batch, "context_tokens": 1})})
    if s.offload is not None:  # experts across memory tiers: the expert budget, not every expert, is in HBM
        return max(0.0, kv_room_bytes(probe) * fraction / kv_bytes_per_cached_token(s))
    mem = memory_per_gpu(probe)
    if not mem["known"]:
        return None
    # recurrent states (linear attention) sit in a pool of one per running sequence (SGLang's MambaPool)
    free = mem["capacity_bytes"] - (mem["total_bytes"] - mem["kv_cache_bytes"]) - max_batch * state_bytes_all_blocks(
        s.model, s.workload.attention_tp)
    per_token = kv_bytes_per_cached_token(s)
    if per_token <= 0:  # no attention cache at all: only the states bound the batch
        return math.inf if free > 0 else 0.0
    return max(0.0, free * fraction / per_token)
