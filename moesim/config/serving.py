"""The ``serving:`` section of a scenario: request stream, scheduler, deployment shape, SLOs, surface grid.

Read by ``moesim serve`` (moesim.serve); the iteration simulator ignores it. Counts that say "per GPU" follow
``workload.tokens_per_gpu``: an instance of G GPUs with data-parallel attention holds G times as many.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from moesim.config.types import RegistryName, Seconds, Strict

# requests per second: below 1e-6 (one request in 11 days) the arrival times leave the clock's resolution
# (at 1e-300/s every TTFT read exactly 0; at 5e-324/s every one was NaN); above 1e9 no engine is modelled
MIN_RATE, MAX_RATE = 1e-6, 1e9

class _Strict(Strict):
    """The scenario's strict base: unknown keys, NaN, infinities and counts past 10^12 refused."""


class PoissonArrival(_Strict):
    """Exponential gaps, mean 1/rate (open-loop Poisson process)."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: float = Field(ge=MIN_RATE, le=MAX_RATE)


class GammaArrival(_Strict):
    """Gamma-distributed gaps with mean 1/rate and coefficient of variation ``cv`` (cv > 1: bursty; cv = 1 is
    Poisson; cv < 1 more regular), as in DistServe's and Vidur's workload generators."""

    kind: Literal["gamma"] = "gamma"
    rate_per_s: float = Field(ge=MIN_RATE, le=MAX_RATE)
    cv: float = Field(default=2.0, gt=0)


class ConstantArrival(_Strict):
    """One request every 1/rate seconds (deterministic arrivals)."""

    kind: Literal["constant"] = "constant"
    rate_per_s: float = Field(ge=MIN_RATE, le=MAX_RATE)


class TraceArrival(_Strict):
    """Arrival times and token counts from a trace file. format: ``azure`` (Azure LLM inference trace CSV:
    TIMESTAMP, ContextTokens, GeneratedTokens), ``mooncake`` (JSONL: timestamp in ms, input_length,
    output_length), ``csv`` (arrival_s, input_tokens, output_tokens) or ``auto`` (from the file's header).
    ``speedup`` divides every gap (2 = twice the rate); the trace's lengths replace input/output_tokens."""

    kind: Literal["trace"] = "trace"
    path: str
    format: Literal["auto", "azure", "mooncake", "csv"] = "auto"
    speedup: float = Field(default=1.0, gt=0)


def _kind_default(kind: str):
    """A mapping without ``kind`` takes ``kind`` (so ``--set serving.arrival.rate_per_s=4`` works alone)."""
    return BeforeValidator(lambda v: {"kind": kind, **v} if isinstance(v, dict) and "kind" not in v else v)


Arrival = Annotated[PoissonArrival | GammaArrival | ConstantArrival | TraceArrival, Field(discriminator="kind"),
                    _kind_default("poisson")]


class ConstantLength(_Strict):
    kind: Literal["constant"] = "constant"
    value: int = Field(ge=1)


class UniformLength(_Strict):
    """Integers uniform on [low, high]."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}")
        return self


class LognormalLength(_Strict):
    """Lognormal with the given mean and coefficient of variation, rounded, clipped to [1, max]."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    cv: float = Field(default=1.0, gt=0)
    max: int = Field(default=131072, ge=1)


class RandomLength(_Strict):
    """Integers uniform on [max(1, floor(value·range_ratio)), value]: SGLang's ``bench_serving`` random dataset
    (``--random-input-len``, ``--random-range-ratio``), as the InferenceX runs draw prompts and answers between
    80% and 100% of nominal (range_ratio 0.8)."""

    kind: Literal["random"] = "random"
    value: int = Field(ge=1)
    range_ratio: float = Field(default=0.8, gt=0, le=1)


Length = Annotated[ConstantLength | UniformLength | LognormalLength | RandomLength, Field(discriminator="kind"),
                   _kind_default("constant")]


class LoadSpec(_Strict):
    """Closed-loop load: ``concurrency`` requests in flight at all times, a new one sent the moment one
    finishes (SGLang ``bench_serving --max-concurrency``, InferenceX ``conc``). The arrival law is then not
    used; a trace still gives the lengths, in its order."""

    concurrency: int = Field(ge=1, le=10**6)


class SchedulerSpec(_Strict):
    """Continuous batching (per instance).

    policy: ``prefill_first`` (SGLang's default: a prefill iteration whenever a waiting request can be
    admitted, else a decode iteration of every running sequence) or ``alternate`` (after each prefill
    iteration, the running sequences get one decode step before the next prefill).
    max_batch: running sequences per GPU. token_budget: prompt tokens per GPU in one prefill iteration; a
    longer prompt is prefilled in chunks (chunked prefill). kv_memory_fraction: share of the HBM left after
    weights, buffers and activations that holds the KV cache (vLLM's gpu_memory_utilization, applied to
    the leftover). When the cache is full, the most recently admitted sequence is preempted and recomputed.
    admission: ``optimistic`` (vLLM and SGLang: admit while the prompt fits, preempt when growing sequences
    overflow the cache) or ``guaranteed_no_evict`` (TensorRT-LLM's default capacity scheduler: admit only
    when the cache can hold the prompt and every token the request may still generate; never preempts).
    cuda_graph_batches: decode batch sizes (sequences per GPU) captured as CUDA graphs; a decode step runs at
    the smallest captured size that holds its batch (padding), a larger batch runs eagerly at its own size.
    chunked_prefill: split prompts longer than the budget over iterations (off: a prompt enters whole, in one
    iteration, and must fit the budget: TensorRT-LLM's default). prefix_cache: reuse cached prompt prefixes
    (``serving.prefix_hit`` of each prompt); off, every prompt token is computed.
    With ``serving.engine`` set, every field left out here takes the engine's value (moesim.serve.engines).
    """

    policy: RegistryName = "prefill_first"  # a name in moesim.serve.policies.SCHEDULERS
    max_batch: int = Field(default=256, ge=1)
    # running sequences of one instance, as engines count them (SGLang's --max-running-requests, TensorRT-LLM's
    # max_batch_size x ranks): wins over max_batch; a TP group's instance may run fewer than it has GPUs
    max_running: int | None = Field(default=None, ge=1)
    token_budget: int = Field(default=8192, ge=1)
    kv_memory_fraction: float = Field(default=0.9, gt=0, le=1)
    admission: Literal["optimistic", "guaranteed_no_evict"] = "optimistic"
    cuda_graph_batches: tuple[int, ...] = ()
    chunked_prefill: bool = True
    prefix_cache: bool = True  # off: serving.prefix_hit is recomputed (no cache to find it in)
    # TensorRT-LLM's attention-DP balance (attention_dp_config: enable_balance, batching_wait_iters 0): with
    # data-parallel attention, new prompts wait until every rank has one to start, or until the oldest has
    # waited this many iterations (timeout_iters); 0: off (TensorRT-LLM's default)
    dp_balance_timeout_iters: int = Field(default=0, ge=0, le=10**4)

    @model_validator(mode="after")
    def _sorted_graphs(self) -> SchedulerSpec:
        if any(b < 1 for b in self.cuda_graph_batches) or list(self.cuda_graph_batches) != sorted(
                set(self.cuda_graph_batches)):
            raise ValueError("cuda_graph_batches must be distinct positive sizes in increasing order")
        return self


class SideSpec(_Strict):
    """One role's GPUs (prefill or decode) of a disaggregated deployment. ep_gpus: GPUs per instance (one EP
    group; default: all of the role's GPUs); gpus / ep_gpus instances run side by side (DP replicas)."""

    gpus: int = Field(ge=1)
    ep_gpus: int | None = Field(default=None, ge=1)
    # redundant experts of one instance (default: placement.redundant_experts)
    redundant_experts: int | None = Field(default=None, ge=0)
    attention_tp: int | None = Field(default=None, ge=1)
    moe_tp: int | None = Field(default=None, ge=1)  # tensor-parallel experts on this side (workload.moe_tp)
    micro_batches: Literal[1, 2] | None = None
    # this side's own scheduler fields (Dynamo and SGLang's PD launch each side with its own engine flags):
    # the fields given here win over serving.scheduler's for this side
    scheduler: SchedulerSpec | None = None


class DeploymentSpec(_Strict):
    """aggregated: every instance prefills and decodes; ``ep_gpus`` per instance (default: the cluster).
    disaggregated: ``prefill`` and ``decode`` GPUs apart (prefill first, from GPU 0); the KV cache moves
    from the prefill GPU to the decode GPU as a flow on the topology when the prefill ends."""

    kind: Literal["aggregated", "disaggregated"] = "aggregated"
    ep_gpus: int | None = Field(default=None, ge=1)
    redundant_experts: int | None = Field(default=None, ge=0)  # per aggregated instance
    prefill: SideSpec | None = None
    decode: SideSpec | None = None

    @model_validator(mode="after")
    def _sides(self) -> DeploymentSpec:
        if self.kind == "disaggregated" and (self.prefill is None or self.decode is None):
            raise ValueError("a disaggregated deployment needs prefill: {gpus: N} and decode: {gpus: M}")
        if self.kind == "aggregated" and (self.prefill is not None or self.decode is not None):
            raise ValueError("prefill/decode sides are for kind: disaggregated")
        return self


class MtpSpec(_Strict):
    """Multi-token prediction / speculative decoding: each decode step verifies ``draft_tokens`` drafted
    tokens per sequence; draft i is accepted when drafts 1..i-1 were and a coin of ``acceptance`` lands
    (one value for every position, or one per position: the chance that draft i is accepted given the
    earlier ones were). Default 0.85: DeepSeek-V3 reports 85-90% for its second token (arXiv 2412.19437,
    §5.4.3). The draft module costs ``draft_cost`` of one decode block's time per drafted token (DeepSeek's
    MTP module is one extra block)."""

    draft_tokens: int = Field(default=1, ge=1, le=8)
    acceptance: Annotated[float, Field(ge=0, le=1)] | tuple[Annotated[float, Field(ge=0, le=1)], ...] = 0.85
    draft_cost: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _per_position(self) -> MtpSpec:
        if isinstance(self.acceptance, tuple) and len(self.acceptance) != self.draft_tokens:
            raise ValueError(f"{len(self.acceptance)} acceptance values for {self.draft_tokens} draft tokens: give "
                             "one per draft position, or one value for all")
        return self


class SloSpec(_Strict):
    """Latency targets. A request meets the SLO when its TTFT and TPOT are both within their limits; the
    run meets it when the ``percentile`` of each is within its limit."""

    ttft_s: float = Field(default=2.0, gt=0)
    tpot_s: float = Field(default=0.1, gt=0)
    percentile: Literal[50, 90, 95, 99] = 90


class SurfaceSpec(_Strict):
    """The iteration-time surface: the DES is run at grid points and interpolated bilinearly.

    prefill_tokens / decode_batch: per-GPU tokens of a prefill iteration / sequences of a decode iteration
    (default: powers of two up to the scheduler's limits); contexts: context lengths (default: powers of 4
    over the workload's range). holdout: also run the midpoints of the grid and report the interpolation
    error there. cache: keep built surfaces on disk keyed by everything that changes them."""

    prefill_tokens: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1, max_length=256)
    decode_batch: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1, max_length=256)
    contexts: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1, max_length=256)
    holdout: bool = True
    cache: bool = True


class OverheadSpec(_Strict):
    """The engine's time outside the GPU's kernels, spent by the serving DES as named delays. Each field left
    out takes the engine profile's ``fitted`` value (moesim/serve/data/engine_terms.json, fitted on measured
    deployments: `moesim validate e2e --refit`; an engine with no measured rows, vLLM, takes the terms
    pooled over all engines), 0 without an engine.

    host_s: per iteration (the scheduler, sampling, detokenisation and launches on the host, between GPU
    passes). request_s: per request, before it reaches the scheduler (HTTP front end, tokenizer, streaming
    the first token back). handoff_s: per request of a disaggregated deployment, between the prefill's end
    and the KV transfer (the router and the transfer's set-up)."""

    host_s: Seconds | None = None
    request_s: Seconds | None = None
    handoff_s: Seconds | None = None


class ServingSpec(_Strict):
    """A request stream served by a deployment. ``requests`` requests are generated (or the trace's first
    ``requests``; null: all of it); ``duration_s`` stops arrivals after that time, whichever comes first.
    prefix_hit: share of each prompt found in the prefix cache (not recomputed, but held in the KV cache).
    engine: ``sglang``, ``vllm`` or ``trtllm`` (``moesim list engines``): that engine's scheduler defaults
    (policy, token budget, running sequences, admission, CUDA graphs, chunking) for the fields ``scheduler``
    leaves out, and its fitted overheads and MTP acceptance for what ``overheads`` and ``mtp`` leave out;
    none (default): moesim's own defaults (no overheads)."""

    arrival: Arrival = PoissonArrival(rate_per_s=1.0)
    load: LoadSpec | None = None  # closed loop (concurrency) instead of the open-loop arrivals
    requests: int | None = Field(default=1000, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    input_tokens: Length = ConstantLength(value=1024)
    output_tokens: Length = ConstantLength(value=256)
    prefix_hit: float = Field(default=0.0, ge=0, lt=1)
    engine: RegistryName | None = None  # a name in moesim.serve.engines.ENGINES
    scheduler: SchedulerSpec = SchedulerSpec()
    overheads: OverheadSpec = OverheadSpec()
    deployment: DeploymentSpec = DeploymentSpec()
    mtp: MtpSpec | None = None
    slo: SloSpec = SloSpec()
    surface: SurfaceSpec = SurfaceSpec()

    @model_validator(mode="after")
    def _closed_loop(self) -> ServingSpec:
        if self.load is not None and self.duration_s is not None:
            raise ValueError("a closed-loop load runs `requests` requests: remove duration_s (or load)")
        return self
