"""Tensor-parallel MoE layers (``workload.moe_tp``): every expert's FFN sharded over the GPUs of the TP group.

The attention TP group's t GPUs hold the same t·T tokens after attention's all-reduce (Megatron-LM, Shoeybi
et al. 2019, §3; SGLang's and TensorRT-LLM's TP MoE). Each GPU runs the router on them, permutes them and runs
every expert with 1/t of its intermediate size over the group's tokens routed to it; the partial outputs
are summed by a ring all-reduce of the t·T × H BF16 output inside the group (2(t−1)/t of the buffer per
GPU). No token moves between GPUs before the experts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.comm.base import LayerTraffic
from moesim.hw.flows import FlowSet
from moesim.ir.blocks import tp_allreduce_flows
from moesim.model.moe import MoEModel


def shard(model: MoEModel, t: int) -> MoEModel:
    """The model as one GPU of a TP group of ``t`` runs it: every expert (routed and shared) 1/t as wide."""
    return replace(model, inter=model.inter // t, shared_inter=model.shared_inter // t)


def group_traffic(ids: np.ndarray, keep: np.ndarray, live: np.ndarray, tokens_gpu: np.ndarray, g: int, t: int,
                  experts: int, scale: float) -> LayerTraffic:
    """Work of a TP MoE layer: ids, keep, live [N, k] over the tokens of GPUs ``tokens_gpu`` [N]. Each GPU of a
    TP group of t runs every expert on all the group's kept copies: slot_tokens [G, E]. No dispatch flows.
    Copies count once (each GPU does 1/t of each copy's work)."""
    group = tokens_gpu // t
    groups = g // t
    counts = np.bincount((group[:, None] * experts + ids)[keep], minlength=groups * experts).reshape(groups, -1)
    slot_tokens = np.repeat(counts, t, axis=0) * scale
    none = FlowSet.point_to_point(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    width = ids.shape[1] + 1
    hist = np.zeros(width)
    hist[1] = float(ids.shape[0]) * scale  # every token stays on its GPUs: one device, one node
    return LayerTraffic(slot_tokens, none, none, copies=float(keep.sum()) * scale,
                        dropped=float((live & ~keep).sum()) * scale, distinct_nodes_mean=1.0,
                        devices_hist=hist, nodes_hist=hist.copy())


def moe_allreduce(g: int, gpus_per_node: int, t: int, tokens_per_gpu: float, hidden: int) -> FlowSet:
    """The ring all-reduce of the MoE output in every TP group (the attention all-reduce's pattern, once)."""
    return tp_allreduce_flows(g, gpus_per_node, t, tokens_per_gpu, hidden, 1)
