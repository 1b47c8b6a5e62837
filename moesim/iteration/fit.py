"""Memory fit as part of validation: a deployment whose weights, KV cache, buffers and activations do not fit
in one GPU's memory (moesim.model.memory) is refused before it runs, naming the biggest consumer and the
fix, unless ``sim.allow_oversubscribe`` (``--allow-oversubscribe``) asks for a what-if study. Offload
scenarios are checked by their tier plan instead (moesim.offload.tiers)."""

from __future__ import annotations

import math

from moesim.config.schema import Scenario
from moesim.iteration.stages import stage_scenario
from moesim.model.memory import memory_per_gpu
from moesim.util.errors import ScenarioError

GiB = 2**30
PARTS = {"expert_weights_bytes": "expert weights", "other_weights_bytes": "other weights (attention, dense, "
         "embeddings)", "kv_cache_bytes": "KV cache", "dispatch_buffers_bytes": "dispatch buffers",
         "activations_bytes": "activations", "optimizer_state_bytes": "gradients and optimizer state"}


def memory_of(s: Scenario) -> dict:
    """memory_per_gpu of the scenario as it runs: a pipelined one per stage."""
    stages = s.workload.pipeline_stages
    return memory_per_gpu(stage_scenario(s), stages=stages) if stages > 1 else memory_per_gpu(s)


def check_fit(s: Scenario) -> None:
    """ScenarioError where one GPU's memory cannot hold the deployment (and oversubscription is not allowed)."""
    if s.offload is not None or s.sim.allow_oversubscribe:
        return
    mem = memory_of(s)
    if not mem["known"] or mem["fits"]:
        return
    parts = sorted((k for k in PARTS if k in mem), key=lambda k: -mem[k])
    split = ", ".join(f"{PARTS[k]} {mem[k] / GiB:,.1f}" for k in parts if mem[k] > 0)
    raise ScenarioError(f"the deployment needs {mem['total_bytes'] / GiB:,.1f} GiB per GPU, the "
                        f"{s.cluster.gpu.name} has {mem['capacity_bytes'] / GiB:,.1f} GiB ({split} GiB); the "
                        f"biggest is the {PARTS[parts[0]]}", path=_field(parts[0]), fix=_fix(s, mem, parts[0]))


def _field(part: str) -> str:
    return {"kv_cache_bytes": "workload.context_tokens", "activations_bytes": "workload.tokens_per_gpu",
            "dispatch_buffers_bytes": "workload.tokens_per_gpu"}.get(part, "cluster.nodes")


def _fix(s: Scenario, mem: dict, part: str) -> str:
    what_if = "or --allow-oversubscribe (sim.allow_oversubscribe: true) to run it anyway as a what-if"
    if part == "expert_weights_bytes":
        rest = mem["total_bytes"] - mem["expert_weights_bytes"]
        room = mem["capacity_bytes"] - rest
        if room > 0:  # expert weights split over the GPUs: enough GPUs bring them under the capacity
            gpus = math.ceil(mem["expert_weights_bytes"] * s.cluster.num_gpus / room)
            nodes = math.ceil(gpus / s.cluster.gpus_per_node)
            return f"use at least {nodes} nodes (cluster.nodes={nodes}), a smaller weight_dtype, {what_if}"
        return f"a smaller weight_dtype or a GPU with more memory, {what_if}"
    if part == "kv_cache_bytes":
        return f"fewer sequences or a shorter context, an fp8 kv_cache_dtype, {what_if}"
    if part == "optimizer_state_bytes":
        return (f"more GPUs per stage (cluster.nodes: fp32 gradients are 4 bytes a parameter the GPU holds), "
                f"data-parallel replicas sharing the optimizer's 12 (workload.data_parallel), {what_if}")
    if part in ("activations_bytes", "dispatch_buffers_bytes"):
        return f"fewer tokens_per_gpu (or more micro_batches), {what_if}"
    return f"more attention TP (workload.attention_tp), a GPU with more memory, {what_if}"


def check_context(s: Scenario) -> None:
    """A context beyond the model's maximum (``max_position_embeddings``, where the model gives it)."""
    limit = s.model.max_position_embeddings
    ctx = s.workload.context_tokens
    if limit is not None and ctx > limit:
        raise ScenarioError(f"context_tokens {ctx:,} exceeds {s.model.name}'s maximum of {limit:,} tokens "
                            "(max_position_embeddings)", path="workload.context_tokens",
                            fix=f"use at most {limit:,}, or set model.max_position_embeddings for a longer-context "
                                "variant")
