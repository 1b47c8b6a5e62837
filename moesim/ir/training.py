"""Training's gradient all-reduces as flows on the topology (the backward stages are in ``programs``).

A ring all-reduce moves 2(n−1)/n of the buffer from every member to the next one on its ring (Thakur,
Rabenseifner & Gropp 2005) and pays 2(n−1) start-up latencies. ``gradient_sync``: dense, attention,
shared-expert, router and embedding gradients over all GPUs, ring in GPU order (so it crosses each node
boundary once, on the NIC of the node's last GPU). ``expert_gradient_sync``: every replicated expert's
gradients over the GPUs that hold its replicas, ring in slot order. Each runs as one communication stage
that ends the last backward program, so its flows share links like any others. ``data_parallel_sync``:
the same GPUs' gradients over their data-parallel replicas (``workload.data_parallel``), closed-form.
"""

from __future__ import annotations

import numpy as np

from moesim.hw.flows import FlowSet
from moesim.ir.program import Comm
from moesim.ir.programs import GRAD_BYTES
from moesim.ir.resolve import Resolved
from moesim.model.memory import param_counts
from moesim.placement import Placement


def _ring(members: np.ndarray, nbytes: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flows of one ring all-reduce over GPUs ``members`` [n] of a ``nbytes`` buffer."""
    n = members.size
    if n <= 1 or nbytes <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return members, np.roll(members, -1), np.full(n, 2 * (n - 1) / n * nbytes)


def dense_gradient_bytes(r: Resolved) -> float:
    """Bytes of the gradients every GPU holds a full copy of (data-parallel attention and dense parts)."""
    m = r.scenario.model
    if r.has_attention_shape:
        p = param_counts(m)
        params = p.attention + p.dense_ffn + p.shared_experts + p.router + p.embeddings
    else:
        params = 3.0 * m.hidden_size * r.model.shared_inter * r.model.num_moe_layers
    return params * GRAD_BYTES


def expert_sync_flows(r: Resolved, placement: Placement, gpus: int) -> tuple[FlowSet, int]:
    """Every replicated expert's ring over its replicas' GPUs, all layers, aggregated per (src, dst); and
    the largest replica count (for the start-up latency)."""
    grad = r.expert_bytes / r.model.weight_bytes_per_param * GRAD_BYTES
    slot_gpu, logcnt = placement.slot_gpu(), placement.logcnt
    src, dst, nbytes = [], [], []
    for layer in range(placement.phy2log.shape[0]):
        row = placement.phy2log[layer]
        for e in np.flatnonzero(logcnt[layer] > 1):
            s, d, b = _ring(slot_gpu[np.flatnonzero(row == e)], grad)
            src.append(s), dst.append(d), nbytes.append(b)
    if not src:
        return FlowSet.point_to_point(np.zeros(0), np.zeros(0), np.zeros(0)), 1
    s, d, b = np.concatenate(src), np.concatenate(dst), np.concatenate(nbytes)
    remote = s != d  # two replicas on one GPU sum locally
    keys = s[remote] * gpus + d[remote]
    uniq, inv = np.unique(keys, return_inverse=True)
    return FlowSet.point_to_point(uniq // gpus, uniq % gpus, np.bincount(inv, weights=b[remote])), \
        int(logcnt.max())


def gradient_bytes_per_gpu(r: Resolved, placement: Placement) -> float:
    """Bytes of the gradients one GPU holds: the dense parts' (a full copy) and its expert slots' in every
    MoE layer."""
    per_slot = r.expert_bytes / r.model.weight_bytes_per_param * GRAD_BYTES
    return dense_gradient_bytes(r) + placement.phy2log.shape[0] * placement.slots_per_gpu * per_slot


def data_parallel_sync(r: Resolved, placement: Placement) -> Comm | None:
    """The gradients' reduction over ``workload.data_parallel`` replicas of the simulated GPUs (Megatron's
    distributed optimizer: a reduce-scatter of the gradients, then an all-gather of the updated parameters;
    together the bytes of one ring all-reduce, 2(d−1)/d of the buffer each way). The replicas sit on other
    nodes and are not simulated, so its time is closed-form: every GPU's share of its node's NICs carries
    its own ring, with 2(d−1) start-ups. Not overlapped with compute. None for one replica."""
    s = r.scenario
    d = s.workload.data_parallel
    if d <= 1 or not s.workload.gradient_sync:
        return None
    nic = r.links.nic_Bps * r.links.nics_per_node / s.cluster.gpus_per_node
    ring = 2 * (d - 1) / d * gradient_bytes_per_gpu(r, placement) / nic
    empty = FlowSet.point_to_point(np.zeros(0), np.zeros(0), np.zeros(0))
    return Comm("data_parallel_sync", empty, ring + 2 * (d - 1) * r.links.collective_latency_s)


def gradient_sync_stages(r: Resolved, placement: Placement) -> list[Comm]:
    """The all-reduce stages that end a training iteration (none without ``workload.gradient_sync``): over
    the simulated GPUs, over each expert's replicas, and over the data-parallel replicas (``data_parallel_sync``,
    where there are several)."""
    s = r.scenario
    if not s.workload.gradient_sync:
        return []
    g, lat = s.cluster.num_gpus, r.links.collective_latency_s
    dense = FlowSet.point_to_point(*_ring(np.arange(g), dense_gradient_bytes(r)))
    experts, replicas = expert_sync_flows(r, placement, g)
    dp = data_parallel_sync(r, placement)
    return [Comm("gradient_sync", dense, 2 * (g - 1) * lat if g > 1 else 0.0),
            Comm("expert_gradient_sync", experts, 2 * (replicas - 1) * lat), *([dp] if dp else [])]
