"""Training iterations: the forward MoE layers, then the backward pass in reverse and the gradient sync.

Backward of an MoE layer (Megatron-Core's alltoall dispatcher in reverse): the unpermute's gradient, an
all-to-all that sends output gradients to the experts (the dispatch pattern, BF16), the experts' backward,
an all-to-all that returns input gradients to the tokens' GPUs (the combine pattern), then the router,
permute and attention backward. Backward compute is taken as 2× the forward's (one GEMM for the input
gradient and one for the weight gradient per forward GEMM; Narayanan et al., SC'21, §3.1).

Gradient sync: a ring all-reduce moves 2(n−1)/n of the buffer through every member's link (Thakur,
Rabenseifner & Gropp 2005): dense and attention gradients over all GPUs, expert gradients over each
expert's replicas; both on the slowest tier their group spans (NIC across nodes, NVLink inside one).
"""

from __future__ import annotations

import numpy as np

from moesim.config.schema import Scenario
from moesim.engine.records import LayerWork
from moesim.memory import has_shape, param_counts
from moesim.model import MoEModel, copy_bytes
from moesim.placement import Placement
from moesim.traffic import FlowSet

GRAD_BYTES = 2  # BF16 gradients


def _reverse(flows: FlowSet, scale: float) -> FlowSet:
    """The same pairs in the other direction; the new source may start at once."""
    return FlowSet(flows.dst.copy(), flows.src.copy(), flows.nbytes * scale, flows.dst.copy(),
                   np.full(flows.size, -1, dtype=np.int64))


def backward_work(s: Scenario, forward: list[LayerWork]) -> list[LayerWork]:
    """Backward LayerWork for every MoE layer, last layer first."""
    h = s.model.hidden_size
    grad_over_dispatch = GRAD_BYTES * h / copy_bytes(h, s.comm.dispatch_dtype)
    grad_over_combine = GRAD_BYTES * h / copy_bytes(h, s.comm.combine_dtype)
    out = []
    for w in reversed(forward):
        # TP attention's backward all-reduce moves the same bytes; it is placed at the start of the layer's
        # backward (its compute stays with the other backward compute at the end)
        pre = np.zeros_like(w.route_s) if w.pre_comm is not None else None
        attn = w.pre_s if w.pre_s is not None else 0.0
        out.append(LayerWork(2 * w.unpermute_s, 2 * w.expert_s, 2 * (w.route_s + attn),
                             _reverse(w.combine, grad_over_combine), _reverse(w.dispatch, grad_over_dispatch),
                             pre_s=pre, pre_comm=w.pre_comm))
    return out


def _ring_s(nbytes: float, members: int, bandwidth: float, latency: float) -> float:
    if members <= 1 or nbytes <= 0:
        return 0.0
    return 2 * (members - 1) / members * nbytes / bandwidth + 2 * (members - 1) * latency


def gradient_sync_s(s: Scenario, placement: Placement) -> float:
    """Seconds for the gradient all-reduces after backward (dense over all GPUs, experts over replicas)."""
    c, gpu = s.cluster, s.cluster.gpu
    nic = c.inter_node.nic_bandwidth or gpu.nic_bandwidth
    nvl = c.intra_node.bandwidth or gpu.nvlink_bandwidth
    multi = c.nodes > 1
    moe = MoEModel.from_spec(s.model)
    if has_shape(s.model):
        p = param_counts(s.model)
        dense = p.attention + p.dense_ffn + p.shared_experts + p.router + p.embeddings
    else:
        dense = 3.0 * s.model.hidden_size * moe.shared_inter * moe.num_moe_layers
    t_dense = _ring_s(dense * GRAD_BYTES, c.num_gpus, nic if multi else nvl, gpu.collective_latency)
    replicas = int(placement.logcnt.max())
    expert_bytes = 3.0 * s.model.hidden_size * s.model.moe_intermediate_size * GRAD_BYTES
    per_gpu = placement.slots_per_gpu * expert_bytes * moe.num_moe_layers
    t_expert = _ring_s(per_gpu, replicas, nic if multi else nvl, gpu.collective_latency)
    return t_dense + t_expert
