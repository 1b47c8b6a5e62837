"""Stage programs of an offload run: one per (decode step, MoE layer), run in that order by the engine.

Per layer, on every GPU (empty stages are left out):
  [attention_proj → attention_core → norms → dense_ffn] → router → permute → [dispatch] (several GPUs:
  token copies to the experts' GPUs) → routed_experts (the cached experts, on the SMs)
    ∥ expert_fetch → fetched_experts  (missed experts' weights over the host link, then their GEMMs)
    ∥ [host_sync] → to_cpu → cpu_experts → from_cpu  (the engine's hand-off to the CPU's threads, activations
      to the host, experts on the CPU, results back)
With prefetch, ``prefetch`` (host → GPU) runs beside everything up to routed_experts, and
``prefetched_experts`` takes routed_experts' place in the region after it; the demand fetch then starts
once the prefetch is in (the host link serves the two in turn, as one copy engine would).
  → shared_experts → [combine] → unpermute [→ tail_blocks → head after the last layer]
Fetched bytes are flows on the topology (DRAM or NVMe link, then the GPU's host link), so fetches of one
node's GPUs, prefetches and activations contend where they share a link.
"""

from __future__ import annotations

import numpy as np

from moesim.hw.flows import FROM_DRAM, FROM_HOST, FROM_NVME, NVME_TO_DRAM, TO_HOST, FlowSet
from moesim.ir.program import HOST, Comm, Compute, Parallel, Program, Stage
from moesim.ir.resolve import Resolved
from moesim.offload.access import LayerAccess
from moesim.offload.tiers import MissCosts, TierPlan

ATTENTION = ("attention_proj", "attention_core", "norms", "dense_ffn", "tail_blocks", "head")
GPU_EXPERTS = ("router", "permute", "routed_experts", "prefetched_experts", "fetched_experts", "shared_experts",
               "unpermute")


def _slot_matrix(tokens: list[list[int]]) -> np.ndarray:
    """[G, S] tokens per expert, zero padded (the cost model's grouped-GEMM input)."""
    width = max((len(x) for x in tokens), default=0)
    out = np.zeros((len(tokens), max(width, 1)))
    for g, x in enumerate(tokens):
        out[g, :len(x)] = x
    return out


def _host_flows(per_gpu: np.ndarray, tier: int) -> FlowSet | None:
    gpus = np.flatnonzero(per_gpu > 0)
    return FlowSet.host(gpus, per_gpu[gpus], tier) if gpus.size else None


def layer_program(r: Resolved, cm, plan: TierPlan, costs: MissCosts, la: LayerAccess, layer: int, block: int,
                  before: dict[str, np.ndarray], after: dict[str, np.ndarray], step: int) -> Program:
    """The program of one MoE layer at one decode step (see the module docstring)."""
    s = r.scenario
    g, b = s.cluster.gpus_per_node, s.workload.tokens_per_gpu
    tokens = np.full(g, float(b))
    tier = FROM_NVME if plan.memory["experts_home"] == "nvme" else FROM_DRAM
    pre: list[Stage] = [Compute(n, before[n]) for n in ATTENTION[:4] if n in before and np.any(before[n])]
    pre += [Compute("router", cm.router(tokens)), Compute("permute", cm.permute(tokens))]
    if la.pairs is not None and la.pairs.sum() > np.trace(la.pairs):
        pre.append(Comm("dispatch", _pairs(la.pairs, r.dispatch_copy_bytes), r.links.dispatch_latency_s))
    hits = Compute("routed_experts", cm.expert(_slot_matrix(la.gpu_tokens)))
    pf = _host_flows(la.prefetched * plan.expert_bytes, tier)
    if pf is None:
        stages: list[Stage] = [*pre, _experts(cm, plan, costs, la, tier, hits)]
    else:  # the prefetch runs beside attention and the cached experts; prefetched ones run once it is in
        later = Compute("prefetched_experts", cm.expert(_slot_matrix(la.prefetched_tokens)))
        stages = [Parallel(((*pre, hits), (Comm("prefetch", pf),))), _experts(cm, plan, costs, la, tier, later)]
    stages.append(Compute("shared_experts", cm.shared(tokens)))
    if la.pairs is not None and la.pairs.sum() > np.trace(la.pairs):
        stages.append(Comm("combine", _pairs(la.pairs.T, r.combine_copy_bytes), r.links.combine_latency_s))
    stages.append(Compute("unpermute", cm.unpermute(tokens)))
    stages += [Compute(n, after[n]) for n in ATTENTION[4:] if n in after and np.any(after[n])]
    return Program(tuple(_flat(stages)), layer, block, "forward", step)


def _experts(cm, plan: TierPlan, costs: MissCosts, la: LayerAccess, tier: int, gpu: Compute) -> Stage:
    """The routed experts' region: GPU branch (``gpu``), fetch branch, CPU branch (the ones with work)."""
    branches: list[tuple[Stage, ...]] = [(gpu,)]
    fetch = _host_flows(la.fetched * plan.expert_bytes, tier)
    if fetch is not None:
        gemm = np.where(la.fetched > 0, cm.expert(_slot_matrix(la.fetched_tokens)), 0.0)
        branches.append((Comm("expert_fetch", fetch), Compute("fetched_experts", gemm)))
    if la.cpu.any():
        secs = np.array([float(costs.cpu_expert_s(np.array(x)).sum()) if x else 0.0 for x in la.cpu_tokens])
        act = np.array([float(costs.act_bytes(np.array(x)).sum()) if x else 0.0 for x in la.cpu_tokens])
        out = _host_flows(act, TO_HOST)
        if tier == FROM_NVME:  # weights a CPU expert needs come off the NVMe first
            w = _host_flows(la.cpu * plan.expert_bytes, NVME_TO_DRAM)
            out = w if out is None else FlowSet.concat([out, w])
        cpu: list[Stage] = []
        sync = costs.s.offload.layer_sync_s
        if sync:  # the engine hands the layer's tokens to the CPU's threads and waits for them (offload.engine)
            cpu.append(Compute("host_sync", np.where(la.cpu > 0, sync, 0.0), HOST))
        cpu += [Comm("to_cpu", out)] if out is not None else []
        cpu.append(Compute("cpu_experts", secs, HOST))
        back = _host_flows(act, FROM_HOST)
        cpu += [Comm("from_cpu", back)] if back is not None else []
        branches.append(tuple(cpu))
    return branches[0][0] if len(branches) == 1 else Parallel(tuple(branches))


def _pairs(pairs: np.ndarray, copy_bytes: int) -> FlowSet:
    """Token copies between GPUs (the diagonal stays on its GPU)."""
    src, dst = np.nonzero(pairs)
    off = src != dst
    return FlowSet.point_to_point(src[off], dst[off], pairs[src[off], dst[off]] * float(copy_bytes))


def _flat(stages: list[Stage]) -> list[Stage]:
    return [st for st in stages if not (isinstance(st, Compute) and not np.any(st.seconds))
            or st.name in ("routed_experts", "prefetched_experts")]
