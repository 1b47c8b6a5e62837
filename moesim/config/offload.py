"""Scenario sections for experts across memory tiers: a node's host side (``cluster.host``) and the
``offload`` section. Quantities accept unit strings, as in :mod:`moesim.config.schema`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from moesim.config.types import Bandwidth, Bytes, Flops, Seconds, Strict


class HostSpec(Strict):
    """A node's host side, for experts that do not all fit in GPU memory (``offload``): host DRAM, NVMe,
    the GPU's host link (PCIe, or NVLink-C2C on a GH200) and the CPU as a device that can run experts.
    Bandwidths are per direction; the host link's is per GPU. ``unified``: one memory that GPU and CPU
    share (Apple M-series): the GPU's ``hbm_bytes`` is that memory, and there is no host link to cross."""

    name: str
    unified: bool = False
    dram_bytes: Bytes
    dram_bandwidth: Bandwidth
    host_link: str = "PCIe"
    host_link_bandwidth: Bandwidth
    host_link_latency: Seconds
    nvme_bytes: Bytes
    nvme_read_bandwidth: Bandwidth
    nvme_latency: Seconds
    cpu: str = "CPU"
    cpu_cores: int = Field(ge=1)
    cpu_flops: Flops  # peak FLOP/s of all cores at the experts' compute type
    cpu_gemm_efficiency: float = Field(gt=0, le=1)  # share of cpu_flops an expert GEMM reaches
    cpu_memory_efficiency: float = Field(gt=0, le=1)  # share of dram_bandwidth an expert streams weights at
    # the share for a single token, when its kernel differs (a matrix-vector product); default: the above
    cpu_gemv_memory_efficiency: float | None = Field(default=None, gt=0, le=1)
    cpu_expert_overhead: Seconds  # per expert call on the CPU (dispatch to threads, quantised-kernel set-up)


# a local engine's fitted terms that live in the scenario's ``runtime`` (eager launches), not in ``offload``
ENGINE_RUNTIME_TERMS = ("kernel_launch_s",)


class OffloadSpec(Strict):
    """Experts across memory tiers (see moesim/offload/__init__.py): which routed experts sit in GPU memory,
    how that set changes, and how a token's other experts are served.

    plan: the experts in GPU memory at the start, within the expert budget: ``hottest`` (the most popular
    (layer, expert) pairs of the router statistics first), ``layers`` (whole layers: every expert of the MoE
    layers not in ``cpu_moe_layers``, the first N or a list, or as ``llama_cpp``'s flags place them, as
    llama.cpp's ``--n-cpu-moe`` / ``-ot``), ``first`` (experts 0..``gpu_experts_per_layer``-1 of every layer,
    as KTransformers' ``--kt-num-gpu-experts``) or ``host`` (none: every routed expert on the host).
    Budget: ``gpu_expert_bytes`` of GPU memory per GPU for routed experts, or ``gpu_expert_share`` of the
    model's routed experts; default: all the GPU memory left after the other weights, the KV cache and
    ``hbm_headroom``. cache: ``static`` (the set never changes), ``lru`` or ``lfu`` (a fetched expert
    takes the place of the least recently / least frequently used one; LFU counts every use since the
    start, ties to the least recent). miss: ``fetch`` the weights over the host link, run the expert on
    the ``cpu`` where its weights are (its tokens' activations cross instead), or the ``cheaper`` of the
    two per expert and step. prefetch: while a layer's attention runs, fetch ``prefetch_experts`` of its
    experts: the most popular ones (``stats``), or the ones its tokens will choose (``oracle``, a bound).
    home: where experts that are not in GPU memory live (``dram`` or ``nvme``)."""

    plan: Literal["hottest", "layers", "first", "host"] = "hottest"
    # plan first: experts 0..N-1 of every MoE layer in GPU memory (by id, not by popularity), as KTransformers'
    # --kt-num-gpu-experts N in SGLang; default N: as many as the expert budget holds per layer
    gpu_experts_per_layer: int | None = Field(default=None, ge=0)
    # plan layers: the first N MoE layers on the host, or the list of MoE layers (0-based among MoE layers)
    cpu_moe_layers: int | list[int] = Field(default=0)
    # llama.cpp's placement flags (--n-cpu-moe N, --cpu-moe, -ot PATTERN=BUFFER, -ngl all) read as the plan:
    # plan layers with the layers they keep on the CPU, a static cache, misses run on the CPU (as llama.cpp)
    llama_cpp: str | None = None
    gpu_expert_bytes: Bytes | None = None
    gpu_expert_share: float | None = Field(default=None, ge=0, le=1)
    hbm_headroom: float = Field(default=0.05, ge=0, lt=1)  # share of GPU memory kept free (runtime, fragments)
    cache: Literal["static", "lru", "lfu"] = "static"
    # the slots form one pool for every layer (``model``), or each MoE layer gets an equal share of them
    # (``layer``: per-layer LRU as in Eliseev & Mazur 2023, "Fast inference of MoE language models with
    # offloading"; a model-wide LRU evicts the next layers' experts, which a decode step needs next).
    # auto: model for a static cache, layer for lru / lfu
    cache_scope: Literal["auto", "model", "layer"] = "auto"
    miss: Literal["fetch", "cpu", "cheaper"] = "fetch"
    prefetch: Literal["none", "stats", "oracle"] = "none"
    prefetch_experts: int = Field(default=2, ge=1)
    home: Literal["dram", "nvme"] = "dram"
    steps: int = Field(default=16, ge=1, le=4096)  # decode steps simulated (prefill: one pass)
    # the local inference engine that runs it: ``ktransformers`` gives the terms below their ``fitted`` values
    # (catalog/offload_engines.json, fitted on KTransformers' published DeepSeek-V3 rows by ``moesim validate
    # offload --refit``; its eager launch cost goes to runtime.kernel_launch_s); ``llama.cpp`` (the default
    # with ``llama_cpp`` flags) borrows KTransformers' CPU-kernel and hand-off terms, not its Python launch
    # cost: no llama.cpp rows convert. A term set here wins. None: the host's figures and no hand-off
    engine: Literal["ktransformers", "llama.cpp"] | None = None
    # seconds per MoE layer and pass in which experts run on the CPU: the GPU hands the layer's tokens to the
    # CPU's threads and waits for their results (stage ``host_sync``, first on the CPU branch)
    layer_sync_s: Seconds | None = None
    # the engine's CPU expert kernels: share of the host's DRAM bandwidth they stream weights at, and of its
    # cpu_flops they compute at (None: the host's cpu_memory_efficiency / cpu_gemm_efficiency)
    cpu_memory_efficiency: float | None = Field(default=None, gt=0, le=1)
    cpu_gemm_efficiency: float | None = Field(default=None, gt=0, le=1)
    # the engine's CPU kernels stream an expert's weights while they compute: a call takes the longer of the
    # two (a roofline). None / False: one after the other, as calibrate/host.py fits torch's kernels
    cpu_overlap: bool | None = None

    @model_validator(mode="after")
    def _llama_cpp(self) -> OffloadSpec:
        """``llama_cpp`` is llama.cpp's plan: whole layers (plan layers), fixed (static), CPU experts on the
        CPU. Fields left unset take those values; a field set otherwise is refused (one way to say it)."""
        if isinstance(self.cpu_moe_layers, int) and self.cpu_moe_layers < 0:
            raise ValueError("cpu_moe_layers is negative | fix: give a number of MoE layers (0 or more) or a list")
        if isinstance(self.cpu_moe_layers, list) and any(x < 0 for x in self.cpu_moe_layers):
            raise ValueError("cpu_moe_layers lists a negative layer | fix: list MoE layers from 0")
        if self.llama_cpp is None:
            return self
        want = {"plan": "layers", "cache": "static", "miss": "cpu"}
        bad = [n for n in ("cpu_moe_layers", "gpu_expert_bytes", "gpu_expert_share") if n in self.model_fields_set]
        bad += [f"{k}: {getattr(self, k)}" for k, v in want.items()
                if k in self.model_fields_set and getattr(self, k) != v]
        if bad:
            raise ValueError(f"llama_cpp gives the plan itself (whole layers, static, CPU experts on the CPU), so "
                             f"{', '.join(bad)} cannot be set beside it | fix: leave out {', '.join(bad)}")
        for k, v in want.items():
            object.__setattr__(self, k, v)
        return self
