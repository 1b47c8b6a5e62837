"""Engine profiles: the scheduler defaults of a serving engine, so ``serving.engine: vllm`` behaves as vLLM
does out of the box. Every field of ``serving.scheduler`` set in the scenario overrides its profile's value.

Engines count their limits per scheduler, not per GPU: a *rank* is one attention group (``attention_tp``
GPUs; one GPU with data-parallel attention) that schedules its own batch. SGLang is the exception for the
token budget: with DP attention it divides ``--chunked-prefill-size`` among the ranks, so its budget is the
instance's. Sources for every value: docs/sources.md, "Engine profiles".

A new profile is one ``EngineProfile`` and one ``ENGINES.register``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from moesim.config.serving import SchedulerSpec
from moesim.serve.policies import SCHEDULERS, Policy
from moesim.util.registry import Registry


@dataclass(frozen=True)
class EngineProfile:
    """One engine's scheduler defaults (per rank unless ``budget_per_instance``)."""

    policy: str  # a SCHEDULERS name
    token_budget: int  # tokens of one iteration (prefill chunks and, mixing, decode tokens)
    budget_per_instance: bool  # the budget is the instance's (SGLang with DP attention), not each rank's
    max_running: int  # running sequences per rank
    admission: str
    graphs: tuple[int, ...]  # CUDA-graph batch sizes per rank (sequences); () = no padding
    chunked_prefill: bool
    source: str
    prefix_cache: bool = True  # all three reuse prefixes by default (docs/sources.md)


def _sglang_graphs(max_bs: int = 512) -> tuple[int, ...]:
    """SGLang's capture list (server_args._generate_cuda_graph_batch_sizes, no speculative decoding)."""
    return tuple(b for b in [1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 512, 16), *range(512, max_bs + 1, 32)]
                 if b <= max_bs)


def _vllm_graphs(max_size: int = 512) -> tuple[int, ...]:
    """vLLM's default capture sizes (config/compilation.py): 1, 2, 4, every 8 to 248, every 16 from 256, up
    to max_cudagraph_capture_size = min(2 x max_num_seqs, 512)."""
    return tuple(b for b in [1, 2, 4, *range(8, 256, 8), *range(256, max_size + 1, 16)] if b <= max_size)


ENGINES: Registry[EngineProfile] = Registry("engine profile", "serving.engine")
ENGINES.register("sglang", EngineProfile(
    "prefill_first", 8192, True, 2048, "optimistic", _sglang_graphs(), True,
    "SGLang server_args: chunked_prefill_size 8192 on 80-141 GB GPUs (divided among DP-attention ranks), "
    "cuda_graph_max_bs 512 at tp >= 4, mixed chunks off, retract on a full KV pool; model_runner: request slots "
    "per DP worker clamped to [2048, 4096] (2048 for long-context models)"),
    help="SGLang: prefill-first iterations, 8192-token chunked prefill per instance, CUDA graphs up to 512")
ENGINES.register("vllm", EngineProfile(
    "mixed", 8192, False, 1024, "optimistic", _vllm_graphs(), True,
    "vLLM EngineArgs.get_batch_defaults (API server, >= 70 GB GPU): max_num_batched_tokens 8192, max_num_seqs "
    "1024; V1 always chunks prefills and mixes them with decodes; recompute preemption"),
    help="vLLM V1: mixed batches under 8192 tokens per rank, 1024 sequences, CUDA graphs up to 512")
ENGINES.register("trtllm", EngineProfile(
    "mixed", 8192, False, 2048, "guaranteed_no_evict", (), False,
    "TensorRT-LLM LLM API: max_num_tokens 8192, max_batch_size 2048, capacity scheduler GUARANTEED_NO_EVICT, "
    "in-flight batching, enable_chunked_prefill False, CUDA-graph padding off (enable_padding False)"),
    help="TensorRT-LLM: in-flight batching, 8192 tokens and 2048 sequences per rank, no eviction, no chunking")


@dataclass(frozen=True)
class Scheduling:
    """What one instance's scheduler does, resolved for its GPUs (``gpus``) and attention group (``tp``)."""

    policy: Policy
    policy_name: str
    max_running: int  # sequences per instance
    budget: int  # tokens per iteration per instance
    admission: str
    graphs: tuple[int, ...]  # per rank
    chunked_prefill: bool
    tp: int
    engine: str | None
    prefix_cache: bool = True
    balance_timeout_iters: int = 0  # attention-DP balance (SchedulerSpec.dp_balance_timeout_iters); 0: off

    def pad(self, per_gpu: float) -> float:
        """Decode sequences per GPU after CUDA-graph padding: a rank's batch (per_gpu x tp) runs at the
        smallest captured size that holds it, or eagerly at its own size above the largest. With attention
        TP (tp above 1) the rank's batch is spread over its GPUs: a fraction of a sequence per GPU."""
        rank = per_gpu * self.tp
        i = bisect.bisect_left(self.graphs, rank - 1e-9)
        if i == len(self.graphs):
            return per_gpu
        return self.graphs[i] / self.tp if self.tp > 1 else self.graphs[i]  # a TP group's share: a fraction


def scheduling(spec: SchedulerSpec, engine: str | None, gpus: int, tp: int) -> Scheduling:
    """The scheduler of an instance of ``gpus`` GPUs in attention groups of ``tp``: the scenario's values
    where it sets them (per GPU), else the engine profile's (per rank), else SchedulerSpec's defaults."""
    ranks = max(1, gpus // tp)
    given = spec.model_fields_set
    prof = None if engine is None else ENGINES.get(engine)

    def pick(field: str, from_profile):
        return getattr(spec, field) if field in given or prof is None else from_profile

    budget = (spec.token_budget * gpus if "token_budget" in given or prof is None else
              prof.token_budget * (1 if prof.budget_per_instance else ranks))
    running = spec.max_batch * gpus if "max_batch" in given or prof is None else prof.max_running * ranks
    running = spec.max_running if spec.max_running is not None else running  # the instance's own count
    graphs = tuple(spec.cuda_graph_batches) if "cuda_graph_batches" in given or prof is None else prof.graphs
    if ("cuda_graph_batches" in given or prof is None) and graphs:
        graphs = tuple(b * tp for b in graphs)  # the scenario gives sequences per GPU
    policy = pick("policy", prof.policy if prof else None)
    return Scheduling(SCHEDULERS.get(policy), policy, running, budget,
                      pick("admission", prof.admission if prof else None), graphs,
                      pick("chunked_prefill", prof.chunked_prefill if prof else None), tp, engine,
                      pick("prefix_cache", prof.prefix_cache if prof else None), spec.dp_balance_timeout_iters)
