"""The ``workload:`` section of a scenario: what one iteration runs per GPU (prefill, decode, mixed or
training), and the layout of its attention and experts (tensor or data parallel, two-batch overlap)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from moesim.config.serving import MtpSpec
from moesim.config.types import Strict


class WorkloadSpec(Strict):
    """Tokens per GPU per iteration (decode: the batch per GPU, one new token each).

    mixed: one iteration of an engine that batches prefill chunks and decode tokens together (vLLM V1,
    TensorRT-LLM in-flight batching, SGLang --enable-mixed-chunk): ``tokens_per_gpu`` tokens per GPU pass the
    MoE and dense layers, ``decode_tokens_per_gpu`` of them are decode tokens attending over
    ``decode_context_tokens`` each, the rest prefill tokens of sequences of ``context_tokens``."""

    mode: Literal["prefill", "decode", "training", "mixed"] = "prefill"
    tokens_per_gpu: int = Field(default=4096, ge=1, le=10**9)
    context_tokens: int = Field(default=4096, ge=1, le=10**8)  # prefill: prompt length; decode: KV cache length
    decode_tokens_per_gpu: int = Field(default=0, ge=0, le=10**9)  # mixed: the decode share of tokens_per_gpu
    decode_context_tokens: int | None = Field(default=None, ge=1, le=10**8)  # mixed: default context_tokens
    # moe_layers: simulate the MoE layers only; whole_model: add attention, norms, dense FFN blocks and the
    # output head (needs the model's attention shape). Default: whole_model when the model has that shape
    scope: Literal["moe_layers", "whole_model"] | None = None
    # 2: split each GPU's tokens into two micro-batches interleaved on the GPU, so one computes while the
    # other's dispatch/combine is in flight (DeepSeek's and SGLang's two-batch overlap)
    micro_batches: Literal[1, 2] = 1
    # training: after the backward pass, all-reduce gradients (dense weights over all GPUs, each expert
    # over its replicas) with a ring on the slowest link tier
    gradient_sync: bool = True
    # training: replicas of the simulated GPUs (Megatron's data-parallel size over the expert-parallel group)
    # that the distributed optimizer shards its state over (Megatron's --use-distributed-optimizer, ZeRO-1).
    # The replicas run the same work at the same time and are not simulated; their gradient reduction ends
    # the iteration (stage data_parallel_sync, moesim.ir.training: closed-form over each GPU's NIC share)
    data_parallel: int = Field(default=1, ge=1, le=10**6)
    # training: micro-batches of tokens_per_gpu each run forward and backward in turn before one gradient
    # sync (gradient accumulation); the iteration's tokens are micro-batches x tokens_per_gpu per GPU
    accumulation_steps: int = Field(default=1, ge=1, le=10**4)
    # tensor-parallel attention: ``attention_tp`` GPUs (inside a node, or whole nodes: TensorRT-LLM's TP16 on
    # 2 x 8) share their tokens, each runs 1/tp of the heads over all of them and an all-reduce of the outputs
    # follows (1 = data-parallel attention)
    attention_tp: int = Field(default=1, ge=1)
    # tensor-parallel MoE inside the attention TP group: moe_tp x ep = attention_tp (TensorRT-LLM's
    # moe_tp_size x moe_ep_size = tp_size; SGLang's --tp N without --ep is moe_tp = N): each expert sharded over
    # moe_tp GPUs of its EP rank, every GPU runs its shards over the group's tokens, no dispatch, and an
    # all-reduce of the MoE output follows. moe_tp 1 with attention_tp above 1 is the engines' EP inside the
    # TP group (whole experts, still no dispatch) outside training; training dispatches all-to-all (Megatron's
    # sequence-parallel ranks own their tokens)
    moe_tp: int = Field(default=1, ge=1)
    # pipeline parallelism (Megatron-LM's PP): the cluster's GPUs split into this many stages of consecutive
    # GPUs (whole nodes, or an even part of one), the model's blocks split evenly over them; each stage is its
    # own EP group and activations move stage to stage. Training runs 1F1B over accumulation_steps
    # micro-batches; inference runs pipeline_micro_batches forward. 1 = no pipeline
    pipeline_stages: int = Field(default=1, ge=1, le=1024)
    # inference with pipeline_stages > 1: micro-batches of tokens_per_gpu each per iteration (default: as many
    # as stages, enough to fill the pipeline)
    pipeline_micro_batches: int | None = Field(default=None, ge=1, le=10**4)
    # training with pipeline_stages > 1: model chunks per stage (Megatron-LM's virtual pipeline, the interleaved
    # 1F1B schedule: the bubble shrinks this many times; accumulation_steps a multiple of pipeline_stages)
    pipeline_virtual_stages: int = Field(default=1, ge=1, le=64)
    # decode with multi-token prediction (DeepSeek-V3's MTP): the verify pass over tokens_per_gpu x (1 + drafts)
    # tokens, then the MTP module (one MoE block and the head) once per draft over tokens_per_gpu, as stages
    # mtp_draft_*; acceptance sets the tokens a step emits (draft_cost applies to serving's surfaces only)
    mtp: MtpSpec | None = None
    # decode: query tokens per sequence (a verify pass: 1 + drafts); the batch's tokens_per_gpu are
    # tokens_per_gpu / decode_queries sequences, each reading its KV cache once
    decode_queries: int = Field(default=1, ge=1, le=16)
    # tokens each attention TP group holds, where the MoE runs inside it (Scenario.moe_in_tp_group): fewer than
    # one per GPU (a batch of 4 on a TP8 group) or any count that tokens_per_gpu x attention_tp cannot spell. The
    # group's GPUs then run exactly these tokens; tokens_per_gpu must be their ceiling share per GPU
    group_tokens: int | None = Field(default=None, ge=1, le=10**6)

    @property
    def tokens_per_gpu_f(self) -> float:
        """Tokens per GPU as the kernels see them: group_tokens / attention_tp where given (a fraction below
        one per GPU), else tokens_per_gpu."""
        return self.group_tokens / self.attention_tp if self.group_tokens else float(self.tokens_per_gpu)

    def moe_in_tp_group(self, gpus: int, mode: str | None = None) -> bool:
        """Whether the MoE runs on the attention TP group's replicated tokens, with no dispatch
        (``moesim.iteration.tensor_parallel``), on a cluster of ``gpus`` in ``mode`` (default: this workload's):
        tensor-parallel experts, or, outside training, an attention TP group that spans the whole cluster (the
        engines' TP-only layouts: SGLang ``--tp 8 --ep 8`` without DP attention, TensorRT-LLM TP8-EP8 without
        attention DP). A smaller attention TP group (attention TP x DP, SGLang's DP attention) reaches the
        experts of the whole cluster by all-to-all."""
        return self.moe_tp > 1 or (self.attention_tp > 1 and (mode or self.mode) != "training"
                                   and self.attention_tp >= gpus)

    @property
    def prefill_tokens_per_gpu(self) -> int:
        """Prompt tokens per GPU: all of them in prefill and training, none in decode, the rest in mixed."""
        if self.mode == "decode":
            return 0
        return self.tokens_per_gpu - (self.decode_tokens_per_gpu if self.mode == "mixed" else 0)

    @property
    def decode_share(self) -> tuple[int, int]:
        """(decode tokens per GPU, their context): the whole batch in decode, the decode part in mixed."""
        if self.mode == "decode":
            return self.tokens_per_gpu // self.decode_queries, self.context_tokens
        if self.mode == "mixed":
            return self.decode_tokens_per_gpu, self.decode_context_tokens or self.context_tokens
        return 0, self.context_tokens
