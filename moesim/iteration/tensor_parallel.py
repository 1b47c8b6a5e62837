"""Tensor-parallel MoE layers (``workload.moe_tp``): experts sharded over the GPUs of the attention TP group.

The attention TP group's A GPUs hold the same A·T tokens after attention's all-reduce (Megatron-LM, Shoeybi
et al. 2019, §3; SGLang's and TensorRT-LLM's TP MoE). The group's MoE is moe_tp x ep = A (TensorRT-LLM's
``moe_tp_size`` x ``moe_ep_size`` = ``tp_size``): GPU p of the group is in EP rank p // moe_tp, which holds the
contiguous E/ep experts, each sharded over its moe_tp GPUs. Each GPU runs the router on the group's tokens,
permutes them and runs its experts with 1/moe_tp of their intermediate size over the group's tokens routed to
them (the shared experts 1/A); the partial outputs are summed by a ring all-reduce of the A·T × H BF16 output
inside the group (2(A−1)/A of the buffer per GPU). No token moves between GPUs before the experts.

This is how the serving engines run EP inside an attention TP group (SGLang ``--tp 8 --ep 8`` without DP
attention and without DeepEP; TensorRT-LLM's TP8-EP8 without ``enable_attention_dp``): the tokens are already
on every GPU of the group, so nothing is dispatched. Training keeps Megatron-LM's layout instead: sequence
parallelism gives every TP rank its own tokens and the experts are reached all-to-all (moe_tp 1).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.comm.base import LayerTraffic
from moesim.hw.flows import FlowSet
from moesim.ir.blocks import tp_allreduce_flows
from moesim.model.moe import MoEModel


def shard(model: MoEModel, t: int, group: int | None = None) -> MoEModel:
    """The model as one GPU runs it: routed experts 1/t as wide, shared experts 1/``group`` (default t)."""
    return replace(model, inter=model.inter // t, shared_inter=model.shared_inter // (group or t))


def group_traffic(ids: np.ndarray, keep: np.ndarray, live: np.ndarray, tokens_gpu: np.ndarray, g: int, a: int,
                  t: int, experts: int, scale: float) -> LayerTraffic:
    """Work of a TP MoE layer: ids, keep, live [N, k] over the tokens of GPUs ``tokens_gpu`` [N], TP groups of
    ``a`` GPUs with experts sharded ``t`` ways (ep = a / t ranks of E/ep experts). Each GPU runs its EP rank's
    experts on all the group's kept copies routed to them: slot_tokens [G, E/ep]. No dispatch flows. Copies
    count once (each GPU does 1/t of the work of each copy routed to its rank)."""
    group = tokens_gpu // a
    groups, ep = g // a, a // t
    counts = np.bincount((group[:, None] * experts + ids)[keep], minlength=groups * experts).reshape(groups, -1)
    rank = (np.arange(g) % a) // t  # each GPU's EP rank inside its group
    per = experts // ep
    slot_tokens = counts[np.arange(g) // a][:, None, :].reshape(g, ep, per)[np.arange(g), rank] * scale
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
