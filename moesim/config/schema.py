"""The scenario schema: pydantic models, frozen, unknown keys rejected.

Quantities accept unit strings (``160GB/s``, ``400Gbps``, ``3us``, ``80GiB``) or plain SI numbers and are
stored in SI units (bytes, seconds, bytes/s). ``model`` and ``cluster.gpu`` arrive here already resolved
from catalogue names or files by :mod:`moesim.config.loader`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from moesim.config.model_spec import ModelSpec
from moesim.config.offload import HostSpec, OffloadSpec
from moesim.config.runtime import RuntimeSpec
from moesim.config.serving import ServingSpec
from moesim.config.types import Bandwidth, Bytes, Flops, RegistryName, Seconds, Strict
from moesim.config.workload import WorkloadSpec

Dtype = Literal["fp32", "bf16", "fp8"]


class GpuSpecIn(Strict):
    """A GPU's figures in SI units; labels and sources travel beside them (see moesim.hardware)."""

    name: str
    peak_bf16_flops: Flops
    peak_fp8_flops: Flops
    hbm_bytes: Bytes
    hbm_bandwidth: Bandwidth
    sms: int = Field(gt=0)
    nvlink_bandwidth: Bandwidth
    gemm_efficiency: float = Field(gt=0, le=1)
    memory_efficiency: float = Field(gt=0, le=1)
    kernel_overhead: Seconds
    tile_rows: int = Field(gt=0)
    collective_latency: Seconds
    nic_bandwidth: Bandwidth
    nic_latency: Seconds
    nvlink_latency: Seconds
    # measured start-up (launch, notify, buffer set-up) of each all-to-all kernel pair, seconds, per
    # algorithm: {"hierarchical": [dispatch, combine], "low_latency": [...]}; without it a dispatch costs
    # collective_latency (twice with a layout exchange) and a combine once
    a2a_startup: dict[str, tuple[float, float]] | None = None
    # NVLink bytes/s that each algorithm's all-to-all kernels reach, when measured (below nvlink_bandwidth,
    # which NCCL collectives reach); default: nvlink_bandwidth
    a2a_nvlink_bandwidth: dict[str, float] | None = None
    # FP4 tensor-core rate (NVFP4/MXFP4 weights and activations, Blackwell); None: no FP4 units, FP4 weights
    # are dequantised and run at the BF16 rate
    peak_fp4_flops: Flops | None = None
    # GPUs one NVLink switch fabric joins in this system (8: an HGX node; 72: a GB200/GB300 NVL72 rack); the
    # cluster's gpus_per_node when the scenario gives none. moesim's "node" is the NVLink domain
    nvlink_domain: int | None = Field(default=None, ge=1)


class IntraNode(Strict):
    """Overrides of the NVLink/NVSwitch fabric inside a node (per GPU, per direction)."""

    bandwidth: Bandwidth | None = None
    latency: Seconds | None = None


class InterNode(Strict):
    """The network between nodes: rail-aligned NICs into a leaf/spine fabric."""

    nic_bandwidth: Bandwidth | None = None
    nics_per_node: int | None = Field(default=None, ge=1)
    latency: Seconds | None = None
    oversubscription: float = Field(default=1.0, ge=1.0, le=1000.0)  # past 1e3 no fabric is built (1e300: no clock)
    nodes_per_leaf: int = Field(default=32, ge=1)


class ClusterSpec(Strict):
    """Nodes of identical GPUs."""

    gpu: GpuSpecIn
    gpu_provenance: dict[str, str] = {}
    gpu_profile: str | None = None  # path of a measured profile (calibrate/); set by the loader
    nodes: int = Field(default=1, ge=1, le=10**8)
    gpus_per_node: int = Field(default=8, ge=1, le=4096)
    intra_node: IntraNode = IntraNode()
    inter_node: InterNode = InterNode()
    host: HostSpec | None = None  # a catalogue machine (``moesim list hosts``) or its figures; for offload
    host_provenance: dict[str, str] = {}

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class Coactivation(Strict):
    """Experts chosen together: every token belongs to one of ``clusters`` token types; each type favours
    its own random set of ``experts_per_cluster`` experts by the factor ``1 + strength``."""

    clusters: int = Field(default=8, ge=1)
    experts_per_cluster: int = Field(default=8, ge=1)
    strength: float = Field(default=4.0, ge=0)


class _Synthetic(Strict):
    """Shared by the synthetic laws. layer_correlation: 0 = each layer's hot experts are independent, 1 = the
    same experts are hot in every layer (an AR(1) latent ranks the experts layer after layer).
    drift, step: the hot experts move slowly across iterations: the latent takes ``step`` AR(1) steps of
    innovation ``drift`` (0 = static), so step t and t+1 differ a little and far steps differ a lot."""

    layer_correlation: float = Field(default=0.0, ge=0, le=1)
    coactivation: Coactivation | None = None
    drift: float = Field(default=0.0, ge=0, le=1)
    step: int = Field(default=0, ge=0)
    # temporal locality over decode steps (offload runs): each expert a sequence's previous token chose in a
    # layer is chosen again with this probability, the rest are drawn afresh (0: tokens are independent)
    locality: float = Field(default=0.0, ge=0, le=1)


class UniformStats(Strict):
    """Every expert equally likely."""

    kind: Literal["uniform"] = "uniform"


class ZipfStats(_Synthetic):
    """Expert popularity ∝ 1/rank**alpha (rank law); alpha 0 is balanced."""

    kind: Literal["zipf"] = "zipf"
    alpha: float = Field(default=1.0, ge=0)


class HotStats(_Synthetic):
    """``hot`` experts share ``share`` of the traffic equally; the rest share what is left equally."""

    kind: Literal["hot"] = "hot"
    hot: int = Field(default=8, ge=1)
    share: float = Field(default=0.5, gt=0, lt=1)


class HistogramStats(Strict):
    """Measured load per expert: ``[layers, experts]`` or a time series ``[steps, layers, experts]`` from
    .npy/.npz/.csv/.json, or a .pt dump (SGLang's expert-distribution recorder ``logical_count``, vLLM's
    EPLB ``expert_load_window``/``expert_load_pass``, DeepSeek EPLB's ``weight``; needs torch).
    step: which step of a time series (an index), or ``mean`` over all steps."""

    kind: Literal["histogram"] = "histogram"
    # one file, or several (a list or a glob): an engine's per-rank dumps, whose counts add
    path: str | list[str]
    key: str | None = None
    step: int | Literal["mean"] = "mean"


class TraceStats(Strict):
    """Token-level routing, replayed exactly: ``topk_ids [layers, tokens, k]`` (and optional
    ``topk_weights``) in .npz or .npy. Tokens are taken in order (GPU 0's first); a trace shorter than
    GPUs × tokens_per_gpu is reused cyclically (then no longer exact: the summary says so)."""

    kind: Literal["trace"] = "trace"
    path: str | list[str]  # several files (per-rank dumps): their tokens one after another


class PowerLawStats(_Synthetic):
    """AIConfigurator's convention: per-expert loads drawn iid from p(x) ∝ x**-alpha, then normalised.

    alpha ≈ 1.01 fits DeepSeek-V3/R1 and ≈ 1.2 Qwen3-235B (AIConfigurator, fitted to measured latency).
    """

    kind: Literal["power_law"] = "power_law"
    alpha: float = Field(default=1.01, gt=0)


class DirichletStats(_Synthetic):
    """Expert popularity drawn from a symmetric Dirichlet; small concentration means more skew."""

    kind: Literal["dirichlet"] = "dirichlet"
    concentration: float = Field(default=1.0, gt=0)


Stats = Annotated[UniformStats | ZipfStats | PowerLawStats | DirichletStats | HotStats | HistogramStats | TraceStats,
                  Field(discriminator="kind")]


class LimitSpec(Strict):
    """Device- or node-limited routing from where experts live (DeepSeek-V2 §2.1.2 device-limited: at most
    M devices per token, devices scored by their best expert; DeepSeek-V3 node-limited: at most M nodes,
    scored by the sum of their top-2 scores). An expert belongs to the GPU of its first replica."""

    scope: Literal["devices", "nodes"] = "nodes"
    max: int = Field(ge=1)
    score: Literal["max", "sum_top2"] | None = None  # default: max for devices, sum_top2 for nodes


class RouterSpec(Strict):
    """Where token→expert choices come from, the routing rule, and overrides of the model's parameters.

    rule: ``token_choice`` (top-k per token), ``expert_choice`` (each expert takes its top-C tokens by
    score, C = tokens·k·capacity_factor/E; Zhou et al., NeurIPS 2022) or ``hash`` (a fixed random table
    from token id to k experts; token ids follow a Zipf law over ``hash_vocab`` with ``hash_zipf``;
    Roller et al., NeurIPS 2021). bias: per-expert values added to the scores for selection only
    (DeepSeek-V3's auxiliary-loss-free balancing). capacity: ``capacity_factor`` per ``capacity_scope``
    (expert or device), dropping by ``drop_policy`` (``position``: later tokens; ``probs``: lowest scores).
    """

    stats: Stats = ZipfStats(alpha=0.0)
    rule: RegistryName = "token_choice"  # a name in moesim.routing.rules.RULES
    top_k: int | None = Field(default=None, ge=1)
    n_group: int | None = Field(default=None, ge=1)
    topk_group: int | None = Field(default=None, ge=1)
    group_score: Literal["max", "sum_top2"] | None = None
    scoring_func: Literal["softmax", "sigmoid"] | None = None
    bias: list[float] | None = None
    limit: LimitSpec | None = None
    capacity_factor: float | None = Field(default=None, gt=0)
    capacity_scope: Literal["expert", "device"] = "expert"
    drop_policy: Literal["position", "probs"] = "position"
    hash_vocab: int = Field(default=50000, ge=1)
    hash_zipf: float = Field(default=1.0, ge=0)


class PlacementSpec(Strict):
    """Where experts live and how a token picks among replicas. kind: a name in the placement registry
    (``moesim.placement.PLACEMENTS``; ``moesim list placements``), checked with the scenario's other fields.

    plan_on: what the planner balances. ``sampled`` (default): the counts of ``window_tokens`` tokens per layer
    routed on a stream of their own, as real EPLB plans on a recorded window; ``oracle``: the exact law that
    routing samples ("perfect" EPLB, an upper bound). Measured statistics are used as recorded either way.
    replica_policy: ``round_robin`` over the flattened (token, k) position (vLLM), ``even`` (each expert's
    assignments split equally over its replicas; EPLB's planning assumption), ``random`` (uniform per
    assignment; SGLang "dynamic"), ``nearest`` (same GPU, else same node, else spread; SGLang "static").
    """

    kind: RegistryName = "contiguous"
    redundant_experts: int = Field(default=0, ge=0, le=2**27)
    # affinity: tokens routed per layer to count co-selected expert pairs; time_aware: steps planned for
    plan_tokens: int = Field(default=8192, ge=64)
    window: int = Field(default=8, ge=1)
    plan_on: Literal["sampled", "oracle"] = "sampled"
    window_tokens: int = Field(default=16384, ge=64)
    replica_policy: Literal["round_robin", "even", "random", "nearest"] = "round_robin"


class CommSpec(Strict):
    """All-to-all algorithm and the wire formats of dispatch and combine.

    algorithm: ``hierarchical`` (DeepEP normal kernels: one copy per (token, node) over RDMA, forwarded over
    NVLink), ``low_latency`` (DeepEP low-latency kernels: one copy per (token, expert) straight to the expert's
    GPU, no forwarding and no layout exchange, SM-free receive), ``flat`` (one copy per (token, expert), NCCL-
    style), or ``auto`` (default): what serving engines pick per phase (SGLang ``--deepep-mode auto``): low
    latency for decode, hierarchical for prefill and training.
    """

    algorithm: RegistryName = "auto"  # auto, or a name in moesim.comm.ALGORITHMS
    dispatch_dtype: Dtype = "bf16"
    combine_dtype: Dtype = "bf16"
    # dispatch starts with a layout exchange (per-expert counts: DeepEP's notify step, Megatron's count
    # all-to-all), which costs one more collective start-up latency (low_latency kernels have none)
    layout_exchange: bool = True
    # run the shared experts while dispatch is in flight (they need no dispatched tokens)
    overlap_shared_experts: bool = False
    # share of the GPU's compute units given to communication kernels (DeepEP runs on SMs; e.g. 24 of 132):
    # every compute stage runs at (1 - fraction) of its speed
    reserved_compute_fraction: float = Field(default=0.0, ge=0, le=0.95)  # the rest must still compute
    # share of a GPU's SMs that the dispatch and combine kernels hold only while they are in flight: compute
    # that overlaps them (two-batch overlap, shared experts beside dispatch) runs at (1 - share) of its speed
    # meanwhile. Default (None): from the algorithm (moesim.comm.base.AllToAll.default_sm_share)
    sm_share: float | None = Field(default=None, ge=0, lt=1)
    # hierarchical: both hops are pipelined in this many chunks; a relay forwards a chunk once it has arrived
    # (DeepEP's chunks are finer). deepseek-v3-prefill-h800 iteration: 1.300 s (2), 1.253 (4), 1.234 (8)
    chunks: int = Field(default=4, ge=1, le=64)


class SimSpec(Strict):
    """Engine fidelity. ``auto`` keeps exact behaviour where it is affordable (see README, "Fidelity").

    network: ``fluid`` shares link bandwidth max-min fairly between flows, event by event; ``drain``
    (scalable) lets each link drain its flows as one server, with no per-flow events.
    routing: ``exact`` routes every token; ``sampled`` (scalable) routes ``sampled_tokens`` tokens per layer,
    spread evenly over the GPUs (at least ``min_sampled_per_gpu`` each), and scales counts and bytes to the
    real token count.
    threads: worker threads that build layers in parallel (0: one per CPU core, at most 4).
    engine: on the drain network, ``lockstep`` evaluates every GPU's walk phase by phase on arrays (no event
    per GPU; links serve phases in program order, see moesim/engine/lockstep.py), ``des`` runs one SimPy
    process per GPU and micro-batch; ``auto`` (default): lockstep where it applies (one micro-batch, no
    parallel branches), else des. The fluid network always runs on des. ``bound``: no engine, the
    closed-form bulk-synchronous bottleneck evaluation (moesim/engine/bound.py), a fast first estimate.
    """

    network: Literal["auto", "fluid", "drain"] = "auto"
    engine: Literal["auto", "des", "lockstep", "bound"] = "auto"
    # refuse a run whose memory estimate (moesim/iteration/sizing.py) exceeds this machine's memory
    size_guard: bool = True
    # run a deployment that does not fit in GPU memory anyway (a what-if; the output says so)
    allow_oversubscribe: bool = False
    routing: Literal["auto", "exact", "sampled"] = "auto"
    sampled_tokens: int = Field(default=65536, ge=256)
    # at least this many sampled tokens per GPU: with fewer, per-GPU load is under-sampled. DeepSeek-V3
    # decode on 64 x 8 H800 against exact routing: 1 per GPU +18.7% iteration time, 6 per GPU +1.89%,
    # 24 per GPU -0.46% (docs/performance.md)
    min_sampled_per_gpu: int = Field(default=6, ge=1)
    threads: int = Field(default=0, ge=0)
    auto_fluid_max_gpus: int = Field(default=8, ge=1)
    auto_exact_max_tokens: int = Field(default=65536, ge=1)


class Scenario(Strict):
    """A whole scenario, validated and frozen."""

    name: str = "scenario"
    seed: int = Field(default=0, ge=0)
    model: ModelSpec
    cluster: ClusterSpec
    router: RouterSpec = RouterSpec()
    placement: PlacementSpec = PlacementSpec()
    workload: WorkloadSpec = WorkloadSpec()
    comm: CommSpec = CommSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    sim: SimSpec = SimSpec()
    # request-level serving (moesim serve); the iteration simulator ignores it
    serving: ServingSpec | None = None
    # experts across memory tiers (moesim/offload); needs cluster.host
    offload: OffloadSpec | None = None

    @property
    def top_k(self) -> int:
        """Experts per token: ``router.top_k`` when set, else the model's ``num_experts_per_tok`` (the one
        place this is resolved)."""
        return self.router.top_k or self.model.num_experts_per_tok

    @property
    def moe_in_tp_group(self) -> bool:
        """Whether the MoE runs inside the attention TP group on this cluster (``WorkloadSpec.moe_in_tp_group``)."""
        return self.workload.moe_in_tp_group(self.cluster.num_gpus)

    @property
    def n_group(self) -> int:
        """Expert groups of group-limited routing: ``router.n_group`` when set, else the model's."""
        return self.router.n_group or self.model.n_group
