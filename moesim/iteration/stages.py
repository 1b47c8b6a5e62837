"""Pipeline stages as scenarios: one stage of a ``workload.pipeline_stages`` scenario is the same scenario on
its own GPUs (the cluster cut to G / stages consecutive GPUs) without a pipeline. Its iteration DES runs every
block once per micro-batch; ``moesim.pipeline`` assigns the blocks to stages and runs the schedule."""

from __future__ import annotations

from moesim.config.schema import Scenario


def stage_scenario(s: Scenario) -> Scenario:
    """One stage: the cluster cut to its G / stages GPUs (whole nodes, or part of one node), one micro-batch
    of ``tokens_per_gpu`` per GPU, no pipeline and no accumulation (the schedule repeats the passes)."""
    p = s.workload.pipeline_stages
    gpn, g = s.cluster.gpus_per_node, s.cluster.num_gpus // s.workload.pipeline_stages
    cluster = s.cluster.model_copy(update={"nodes": max(1, g // gpn), "gpus_per_node": min(g, gpn)})
    nics = cluster.inter_node.nics_per_node
    if nics and nics > cluster.gpus_per_node:
        cluster = cluster.model_copy(update={"inter_node": cluster.inter_node.model_copy(
            update={"nics_per_node": cluster.gpus_per_node})})
    wl = s.workload.model_copy(update={"pipeline_stages": 1, "pipeline_micro_batches": None,
                                       "accumulation_steps": 1})
    return s.model_copy(update={"cluster": cluster, "workload": wl}) if p > 1 else s
