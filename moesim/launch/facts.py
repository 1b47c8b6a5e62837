"""What an engine's launch needs from a serving scenario, resolved once for every engine: per role
(aggregated, or the prefill and decode sides) the instance's GPUs and nodes, its parallel sizes, the
scheduler limits as that instance runs them, the memory share the weights and the KV cache take, and the
model's Hugging Face id. No I/O; the renderers (moesim.launch.sglang, ...) turn these into flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moesim.config.schema import Scenario
from moesim.config.serving import ServingSpec
from moesim.model.memory import kv_bytes_per_cached_token, memory_per_gpu
from moesim.serve.deploy import Role, deployment_of
from moesim.util.errors import ScenarioError


@dataclass(frozen=True)
class RoleFacts:
    """One role's instances. Counts are per instance unless named otherwise; ``ranks`` are the scheduler
    ranks (attention groups of ``attention_tp`` GPUs) of one instance."""

    name: str  # aggregated | prefill | decode
    instances: int
    gpus: int  # per instance
    nodes: int  # nodes one instance spans (1 when it is part of a node)
    gpus_per_node: int  # of one instance's nodes that it uses
    first_gpu: int  # global index of the role's first GPU
    attention_tp: int
    moe_tp: int
    redundant_experts: int  # per instance
    placement: str  # placement.kind of the instance
    max_running: int  # running sequences per instance
    token_budget: int  # tokens per iteration per instance
    chunked_prefill: bool
    prefix_cache: bool
    mixed: bool  # prefill chunks and decode tokens in one iteration
    graph_max_per_rank: int | None  # the largest CUDA-graph batch of a rank (None: the engine's default)
    mem_fraction: float | None  # (weights + KV cache) / HBM per GPU (None: memory not modelled)
    scenario: Scenario  # one instance's iteration scenario

    @property
    def ranks(self) -> int:
        return max(1, self.gpus // self.attention_tp)

    @property
    def ep_size(self) -> int:
        return max(1, self.gpus // self.moe_tp)


@dataclass(frozen=True)
class Facts:
    scenario: Scenario
    kind: str  # aggregated | disaggregated
    model: str  # catalogue name (or the scenario's model name)
    hf_id: str | None  # Hugging Face repository of the weights (None: not known; a placeholder is written)
    roles: tuple[RoleFacts, ...]
    mtp_drafts: int  # drafted tokens per step (0: no speculative decoding)
    kv_fp8: bool
    comm_algorithm: str


def facts_of(s: Scenario) -> Facts:
    """The launch facts of ``s`` (serving defaults where it has no ``serving`` section); ScenarioError where
    the deployment cannot be resolved."""
    if s.serving is None:
        s = s.model_copy(update={"serving": ServingSpec()})
    dep = deployment_of(s)
    roles = tuple(_role(s, r) for r in dep.roles)
    mtp = s.serving.mtp
    return Facts(s, dep.kind, s.model.name, hf_id(s), roles, mtp.draft_tokens if mtp else 0,
                 s.model.kv_cache_dtype == "fp8", s.comm.algorithm)


def hf_id(s: Scenario) -> str | None:
    """The Hugging Face repository the catalogue took the model's config from (its ``source``'s first word
    when it reads ``org/name``), or None."""
    source = (getattr(s.model, "source", None) or "").split()
    first = source[0] if source else ""
    return first if first.count("/") == 1 and not first.startswith((".", "/")) else None


def _role(s: Scenario, r: Role) -> RoleFacts:
    sc, g, gpn = r.scenario, r.gpus_per_instance, s.cluster.gpus_per_node
    graphs = r.sched.graphs
    return RoleFacts(
        r.name, r.instances, g, max(1, math.ceil(g / gpn)), min(g, gpn), r.first_gpu, sc.workload.attention_tp,
        sc.workload.moe_tp, sc.placement.redundant_experts, sc.placement.kind, r.max_running, r.prefill_budget,
        r.sched.chunked_prefill, r.sched.prefix_cache, r.sched.policy.mixes,
        int(max(graphs)) if graphs and r.sched.engine is None else None, _mem_fraction(r), sc)


def _mem_fraction(r: Role) -> float | None:
    """The share of one GPU's HBM that weights and the KV cache take in moesim's memory model: what SGLang's
    --mem-fraction-static and vLLM's --gpu-memory-utilization (less activations) size."""
    mem = memory_per_gpu(r.scenario)
    if not mem["known"] or not math.isfinite(r.kv_tokens):
        return None
    weights = mem["expert_weights_bytes"] + mem["other_weights_bytes"]
    kv = r.kv_tokens / r.gpus_per_instance * kv_bytes_per_cached_token(r.scenario)
    frac = (weights + kv) / mem["capacity_bytes"]
    if not 0 < frac <= 1:
        raise ScenarioError(f"weights and KV cache take {frac:.0%} of the {r.scenario.cluster.gpu.name} HBM",
                            path="serving.scheduler.kv_memory_fraction", fix="lower kv_memory_fraction")
    return math.floor(frac * 1000) / 1000  # rounded down: the engine must not reserve more than moesim counted


HIGH_MEM_FRACTION = 0.92  # above this, engines' own CUDA-graph and communication buffers may not fit (a note says so)


def mem_notes(f: Facts, flag: str) -> list[str]:
    """The note of a launch whose memory share is high (none where it is not)."""
    top = max(r.mem_fraction or 0 for r in f.roles)
    if top <= HIGH_MEM_FRACTION:
        return []
    return [f"{flag} up to {top:.3f} is what moesim's memory model leaves for weights and KV cache "
            f"(serving.scheduler.kv_memory_fraction {f.scenario.serving.scheduler.kv_memory_fraction:g} of the rest); "
            "the engine also needs room for CUDA graphs and communication buffers: lower it if it runs out of memory"]
