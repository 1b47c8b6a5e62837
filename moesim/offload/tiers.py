"""Where experts live: the GPU's expert budget, the planned resident set, memory per tier, and the cost of
serving a miss either way. Pure functions of the scenario; a plan that cannot fit is a ScenarioError.

GPU memory per GPU = the other weights (attention, dense FFNs, shared experts, router, embeddings, as in
moesim/model/memory.py) + KV cache + activations + staging for experts fetched but not kept + the expert slots.
Routed experts are split over the node's GPUs contiguously (expert ``e`` on GPU ``e·G // E``); each GPU
caches only its own. Every routed expert also has its home copy on the host (``offload.home``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from moesim.config.schema import Scenario
from moesim.iteration.checks import host_moe_layers
from moesim.model.memory import memory_per_gpu, param_counts
from moesim.model.moe import BYTES_PER_PARAM, MoEModel
from moesim.util.errors import ScenarioError

GiB = 2**30
ACT_BYTES = 2  # BF16 activations to and from CPU experts


@dataclass(frozen=True)
class TierPlan:
    """The plan for one scenario. slots: expert slots per GPU; staging_bytes: room for fetched experts that
    are not kept; memory: bytes per tier (``memory_doc``); owner [E]: the GPU of each expert."""

    slots: int
    expert_bytes: float
    staging_bytes: float
    owner: np.ndarray
    memory: dict


def owner_of(experts: int, gpus: int) -> np.ndarray:
    """[E] GPU of each routed expert: contiguous blocks."""
    return (np.arange(experts) * gpus) // experts


def plan_tiers(s: Scenario, kv: bool = True) -> TierPlan:
    """Budget, slots and memory per tier; raises ScenarioError when the plan does not fit. ``kv``: count
    the scenario's KV cache (serving's iteration points leave it to the scheduler's KV limit)."""
    o, gpu = s.offload, s.cluster.gpu
    moe = MoEModel.from_spec(s.model)
    eb = moe.expert_weight_bytes
    g = s.cluster.gpus_per_node
    owned = -(-moe.experts // g) * moe.num_moe_layers  # (layer, expert) pairs one GPU can hold at most
    fixed = _fixed_bytes(s)
    if not kv:
        fixed["kv_cache"] = 0.0
    fetches = o.miss != "cpu"
    top_k = s.top_k
    staging = (top_k + (o.prefetch_experts if o.prefetch != "none" else 0)) * eb if fetches else 0.0
    usable = gpu.hbm_bytes * (1 - o.hbm_headroom)
    left = usable - sum(fixed.values()) - staging
    if left < 0:
        raise ScenarioError(f"the non-expert weights, KV cache and staging need {sum(fixed.values()) + staging:.3g} B "
                            f"of the GPU's {usable:.3g} usable bytes", path="offload",
                            fix="use a GPU with more memory, fewer tokens_per_gpu or context_tokens, or a smaller "
                                "weight_dtype")
    budget = _budget(s, left, eb, owned)
    slots = int(min(owned, budget // eb))
    if o.plan == "layers":  # whole layers; a static cache holds them and nothing more (as llama.cpp)
        need = _whole_layers_fit(s, slots, owned // moe.num_moe_layers, eb)
        slots = need if o.cache == "static" else slots
    if o.plan == "first":
        need = _first_fit(s, slots, eb)
        slots = need if o.cache == "static" else slots
    owner = owner_of(moe.experts, g)
    memory = _memory_doc(s, fixed, staging, slots * eb, usable, moe)
    return TierPlan(slots, eb, staging, owner, memory)


def _whole_layers_fit(s: Scenario, slots: int, per_layer: int, eb: float) -> int:
    """plan layers keeps whole layers (as llama.cpp does): the GPU's share of every layer not on the host must
    fit in its expert slots, or the plan is refused (llama.cpp would run out of GPU memory). Returns the slots
    they take."""
    gpu_layers = len(MoEModel.from_spec(s.model).moe_layer_ids) - len(host_moe_layers(s))
    need = gpu_layers * per_layer
    if need > slots:
        fit = slots // max(per_layer, 1)
        field = "offload.llama_cpp" if s.offload.llama_cpp is not None else "offload.cpu_moe_layers"
        raise ScenarioError(f"the experts of the {gpu_layers} MoE layers kept on the GPU need "
                            f"{need * eb / GiB:.2f} GiB per GPU; {slots * eb / GiB:.2f} GiB are left for experts "
                            f"(room for {fit} layers)",
                            path=field, fix=f"keep at most {fit} MoE layers on the GPU (more layers on the CPU)")
    return need


def first_per_gpu(s: Scenario, slots: int) -> int:
    """plan first: experts per layer a GPU keeps (its lowest-numbered own experts): ``gpu_experts_per_layer``
    split over the node's GPUs as the experts are, or what ``slots`` hold per layer."""
    moe = MoEModel.from_spec(s.model)
    n = s.offload.gpu_experts_per_layer
    if n is None:
        return slots // moe.num_moe_layers
    owner = owner_of(moe.experts, s.cluster.gpus_per_node)
    return int(np.bincount(owner[: min(n, moe.experts)], minlength=s.cluster.gpus_per_node).max())


def _first_fit(s: Scenario, slots: int, eb: float) -> int:
    """plan first: the same experts in every layer; with ``gpu_experts_per_layer`` they must fit the slots
    (else refused, as the engine would run out of GPU memory). Returns the slots they take."""
    moe = MoEModel.from_spec(s.model)
    n = s.offload.gpu_experts_per_layer
    if n is not None and n > moe.experts:
        raise ScenarioError(f"gpu_experts_per_layer {n} exceeds the model's {moe.experts} experts per layer",
                            path="offload.gpu_experts_per_layer", fix=f"use 0..{moe.experts}")
    need = first_per_gpu(s, slots) * moe.num_moe_layers
    if need > slots:
        raise ScenarioError(f"{n} experts per layer on the GPU need {need * eb / GiB:.2f} GiB per GPU; "
                            f"{slots * eb / GiB:.2f} GiB are left for experts", path="offload.gpu_experts_per_layer",
                            fix=f"use at most {slots // moe.num_moe_layers * s.cluster.gpus_per_node}")
    return need


def kv_room_bytes(s: Scenario) -> float:
    """GPU memory per GPU left for the KV cache when serving an offload scenario: what is usable after the
    other weights, activations, staging and the expert budget, which serving needs stated explicitly."""
    o = s.offload
    if o.gpu_expert_bytes is None and o.gpu_expert_share is None:
        raise ScenarioError("serving needs the expert budget stated: the GPU memory it leaves holds the KV cache",
                            path="offload.gpu_expert_bytes", fix="set gpu_expert_bytes (e.g. 16GiB) or "
                                                                 "gpu_expert_share")
    p = plan_tiers(s, kv=False)
    hbm = p.memory["hbm_per_gpu"]
    return hbm["usable_bytes"] - hbm["total_bytes"]


def _budget(s: Scenario, left: float, eb: float, owned: int) -> float:
    o = s.offload
    if o.gpu_expert_bytes is not None:
        if o.gpu_expert_bytes > left:
            raise ScenarioError(f"{o.gpu_expert_bytes / GiB:.2f} GiB of expert cache exceeds the "
                                f"{left / GiB:.2f} GiB of GPU memory left after the other weights, KV cache and "
                                "staging", path="offload.gpu_expert_bytes",
                                fix=f"use at most {left / GiB:.2f}GiB, or leave it unset (all that is left)")
        return o.gpu_expert_bytes
    if o.gpu_expert_share is not None:
        want = np.floor(o.gpu_expert_share * owned) * eb
        if want > left:
            raise ScenarioError(f"{o.gpu_expert_share:g} of the routed experts needs {want / GiB:.2f} GiB per GPU, "
                                f"more than the {left / GiB:.2f} GiB left", path="offload.gpu_expert_share",
                                fix=f"use at most {left / eb / owned:.3f}")
        return float(want)
    return 0.0 if s.offload.plan == "host" and s.offload.cache == "static" else left


def _fixed_bytes(s: Scenario) -> dict[str, float]:
    """Per GPU: weights other than routed experts, KV cache, activations and dispatch buffers (bytes)."""
    mem = memory_per_gpu(s)
    if mem["known"]:
        return {"other_weights": mem["other_weights_bytes"], "kv_cache": mem["kv_cache_bytes"],
                "activations": mem["activations_bytes"] + mem["dispatch_buffers_bytes"]}
    moe = MoEModel.from_spec(s.model)
    wb = BYTES_PER_PARAM[s.model.weight_dtype]
    shared = 3.0 * moe.hidden * moe.shared_inter * moe.num_moe_layers
    router = float(moe.experts * moe.hidden * moe.num_moe_layers)
    return {"other_weights": (shared + router) * wb, "kv_cache": 0.0, "activations": 0.0}


def _memory_doc(s: Scenario, fixed: dict[str, float], staging: float, slots_bytes: float, usable: float,
                moe: MoEModel) -> dict:
    """Bytes per tier and whether each fits; raises when the host tiers cannot hold the experts' home."""
    o, h = s.offload, s.cluster.host
    all_experts = moe.expert_weight_bytes * moe.experts * moe.num_moe_layers
    hbm_used = sum(fixed.values()) + staging + slots_bytes
    every = slots_bytes * s.cluster.gpus_per_node >= all_experts - 0.5
    home = "hbm" if every else o.home
    if h.unified and home == "dram":
        raise ScenarioError("on unified memory the experts that do not fit have no separate host DRAM to live in",
                            path="offload.home", fix="use home: nvme (the SSD), or a smaller weight_dtype")
    dram = all_experts if home == "dram" else 0.0
    if dram > h.dram_bytes:
        raise ScenarioError(f"the routed experts' home copies ({dram / GiB:.1f} GiB) do not fit in the host's "
                            f"{h.dram_bytes / GiB:.1f} GiB of DRAM", path="offload.home",
                            fix="use home: nvme, a host with more DRAM, or a smaller weight_dtype")
    nvme = all_experts if home == "nvme" else 0.0
    if nvme > h.nvme_bytes:
        raise ScenarioError(f"the routed experts ({nvme / GiB:.1f} GiB) do not fit on the host's NVMe",
                            path="offload.home", fix="use a host with a larger NVMe, or home: dram")
    return {"hbm_per_gpu": {**{f"{k}_bytes": v for k, v in fixed.items()}, "staging_bytes": staging,
                            "expert_slots_bytes": slots_bytes, "total_bytes": hbm_used,
                            "capacity_bytes": s.cluster.gpu.hbm_bytes, "usable_bytes": usable,
                            "fits": hbm_used <= usable},
            "dram_per_node": {"experts_bytes": dram, "capacity_bytes": h.dram_bytes, "fits": dram <= h.dram_bytes},
            "nvme_per_node": {"experts_bytes": nvme, "capacity_bytes": h.nvme_bytes, "fits": nvme <= h.nvme_bytes},
            "experts_home": home, "model_params": param_counts(s.model).total if s.model.has_attention_shape else None}


def initial_set(s: Scenario, popularity: np.ndarray, owner: np.ndarray, gpu: int,
                slots: int = 0) -> list[tuple[int, int]]:
    """The planned (layer, expert) pairs of ``gpu``, in the order they claim its ``slots`` (``offload.plan``).
    popularity [layers, E]."""
    layers, e = popularity.shape
    mine = np.flatnonzero(owner == gpu)
    plan = s.offload.plan
    if plan == "host":
        return []
    if plan == "layers":
        host = set(host_moe_layers(s))
        return [(layer, int(x)) for layer in range(layers) if layer not in host for x in mine]
    if plan == "first":  # the slots hold the same number of lowest-numbered experts in every layer
        keep = mine[: first_per_gpu(s, slots)]
        return [(layer, int(x)) for layer in range(layers) for x in keep]
    sub = popularity[:, mine]
    order = np.argsort(-sub, axis=None, kind="stable")  # hottest first; ties: lower layer, lower expert
    return [(int(i // mine.size), int(mine[i % mine.size])) for i in order]


@dataclass(frozen=True)
class MissCosts:
    """Seconds to serve one missed expert each way, for ``miss: cheaper`` and the CPU stage's time.
    gemm: seconds of the GPU's grouped GEMM of fetched experts, rows [R, S] of tokens per expert → [R]
    (the cost model's ``expert``; without it the fetched experts' GEMM counts as free in the choice)."""

    s: Scenario
    expert_bytes: float
    gemm: Callable[[np.ndarray], np.ndarray] | None = None

    @cached_property
    def expert_flops_per_token(self) -> float:
        """FLOPs of one routed expert on one token: 2 · 3·H·F."""
        return 2.0 * MoEModel.from_spec(self.s.model).expert_params

    def cpu_expert_s(self, tokens: np.ndarray) -> np.ndarray:
        """CPU time of experts with ``tokens`` [n] tokens each (the node's cores split over its GPUs): call
        overhead + weight streaming + GEMM FLOPs, or with ``offload.cpu_overlap`` overhead + the longer of
        the two (the engine's kernels stream weights while they compute)."""
        h, o = self.s.cluster.host, self.s.offload
        share = 1.0 / self.s.cluster.gpus_per_node
        tokens = np.asarray(tokens, dtype=float)
        flops = self.expert_flops_per_token * tokens
        if o.cpu_memory_efficiency is not None:  # the engine's kernels (offload.engine), one rate for every batch
            eff = np.full(tokens.shape, o.cpu_memory_efficiency)
        else:
            eff = np.where(tokens == 1, h.cpu_gemv_memory_efficiency or h.cpu_memory_efficiency,
                           h.cpu_memory_efficiency)
        mem_s = self.expert_bytes / (h.dram_bandwidth * eff * share)
        gemm_s = flops / (h.cpu_flops * (o.cpu_gemm_efficiency or h.cpu_gemm_efficiency) * share)
        if o.cpu_overlap:  # weights stream while the cores compute: the longer of the two
            return h.cpu_expert_overhead + np.maximum(mem_s, gemm_s)
        return h.cpu_expert_overhead + mem_s + gemm_s

    def act_bytes(self, tokens: np.ndarray) -> np.ndarray:
        """Activation bytes one way for experts run on the CPU (zero on unified memory)."""
        if self.s.cluster.host.unified:
            return np.zeros(np.shape(tokens))
        return np.asarray(tokens, dtype=float) * self.s.model.hidden_size * ACT_BYTES

    @cached_property
    def link_bandwidth(self) -> float:
        """Bytes/s of an expert copy from its home to the GPU: the slower of the home and the host link."""
        h = self.s.cluster.host
        src = h.nvme_read_bandwidth if self.s.offload.home == "nvme" else h.dram_bandwidth
        return src if h.unified else min(src, h.host_link_bandwidth)

    def finish_s(self, tokens: list[int]) -> np.ndarray:
        """[m+1] seconds until one GPU's misses of one layer are served when the ``k`` with the most tokens are
        fetched and the rest run on the CPU (k = 0..m), as ``programs._experts`` charges them: one copy over
        the link then the GPU's grouped GEMM, beside the CPU's branch (activations there, the experts,
        activations back). tokens [m]: the misses' tokens, most first. Alone on the links: the node's other
        GPUs' copies are not counted."""
        m = len(tokens)
        tok = np.asarray(tokens, dtype=float)
        k = np.arange(m + 1)
        link = np.where(k > 0, k * self.expert_bytes / self.link_bandwidth + self._latency(), 0.0)
        rows = np.where(k[:, None] > np.arange(m)[None, :], tok[None, :], 0.0)  # row k: the k largest
        gemm = self.gemm(rows) if self.gemm is not None and m else np.zeros(m + 1)
        return np.maximum(link + np.where(k > 0, gemm, 0.0), self._cpu_branch(tok))

    def split(self, tokens: list[int]) -> int:
        """``miss: cheaper``: how many of the misses (most tokens first) to fetch: the ``k`` whose time
        (``finish_s``) is least, ties to fetching. Every candidate's time falls as the link gets faster, so
        the least of them does too: for the same cache contents a faster link never makes a layer's misses
        slower (a greedy choice per miss could)."""
        if not tokens:
            return 0
        done = self.finish_s(tokens)
        return int(np.flatnonzero(done <= done.min() * (1 + 1e-12))[-1])

    def _latency(self) -> float:
        """Start-up of a copy from the experts' home: the NVMe's (when they live there) and the host link's."""
        h = self.s.cluster.host
        return h.host_link_latency + (h.nvme_latency if self.s.offload.home == "nvme" else 0.0)

    def _cpu_branch(self, tok: np.ndarray) -> np.ndarray:
        """[m+1] seconds of the CPU branch when misses k..m-1 of ``tok`` [m] run there: activations to the host
        (beside the NVMe reads of their weights when they live there), the experts, activations back."""
        h = self.s.cluster.host
        m = tok.size
        tail = np.concatenate([np.cumsum(self.cpu_expert_s(tok)[::-1])[::-1], [0.0]])
        act = np.concatenate([np.cumsum(self.act_bytes(tok)[::-1])[::-1], [0.0]])
        n_rest = m - np.arange(m + 1)
        move = np.where(act > 0, act / h.host_link_bandwidth + h.host_link_latency, 0.0)
        if self.s.offload.home == "nvme":
            read = np.where(n_rest > 0, n_rest * self.expert_bytes / h.nvme_read_bandwidth + h.nvme_latency, 0.0)
            return np.maximum(move, read) + tail + move
        return move + tail + move
