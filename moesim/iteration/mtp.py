"""Multi-token prediction in one decode iteration (``workload.mtp``): the verify pass and the draft passes
as stages of their own.

DeepSeek-V3's MTP (arXiv 2412.19437, §2.2, §5.4.3; SGLang's and vLLM's EAGLE-style MTP serving): each decode
step runs the main model over every sequence's last token and its d drafts (the verify pass: B·(1 + d) tokens
per GPU, each attending over the cache), then the MTP module (one MoE block, sharing the embedding and the
output head) d times over B tokens to draft the next step's tokens. The verify pass is the model's
programs at B·(1 + d) tokens; each draft pass is one more program, the MTP module's one MoE block with its
head, its stages named ``mtp_draft_*``. A step emits 1 + the accepted drafts per sequence: 1 + Σᵢ Πⱼ≤ᵢ aⱼ
on average for acceptances a.
"""

from __future__ import annotations

from dataclasses import replace

from moesim.config.schema import Scenario
from moesim.ir.program import Comm, Compute, Parallel, Program, Stage

PREFIX = "mtp_draft_"


def verify_scenario(s: Scenario) -> Scenario:
    """The main model's pass: B·(1 + d) tokens per GPU in decode, no MTP (itself when there is none)."""
    mtp = s.workload.mtp
    if mtp is None:
        return s
    return s.model_copy(update={"workload": s.workload.model_copy(update={
        "tokens_per_gpu": s.workload.tokens_per_gpu * (1 + mtp.draft_tokens), "decode_queries": 1 + mtp.draft_tokens,
        "mtp": None})})


def draft_scenario(s: Scenario) -> Scenario:
    """The MTP module: the model cut to one MoE block (no dense blocks before it), B tokens per GPU."""
    model = s.model.model_copy(update={"num_hidden_layers": 1, "first_k_dense_replace": 0, "mlp_only_layers": (),
                                       "moe_layer_freq": 1, "attention_kinds": s.model.attention_kinds[-1:]})
    return s.model_copy(update={"model": model, "workload": s.workload.model_copy(update={"mtp": None})})


def expected_tokens(s: Scenario) -> float:
    """Tokens a sequence emits per decode step on average: 1 + Σᵢ Πⱼ≤ᵢ aⱼ (1 without MTP)."""
    mtp = s.workload.mtp
    if mtp is None:
        return 1.0
    acc = mtp.acceptance if isinstance(mtp.acceptance, tuple) else (mtp.acceptance,) * mtp.draft_tokens
    out, run = 1.0, 1.0
    for a in acc:
        run *= a
        out += run
    return out


def draft_programs(program: Program, drafts: int, first_layer: int, first_block: int) -> list[Program]:
    """``drafts`` sequential passes of the MTP module's one program, its stages renamed ``mtp_draft_*``, as
    layers ``first_layer``... (blocks ``first_block``...) after the main model's."""
    stages = tuple(_renamed(st) for st in program.stages)
    return [replace(program, stages=stages, layer=first_layer + j, block=first_block + j) for j in range(drafts)]


def _renamed(st: Stage) -> Stage:
    if isinstance(st, Parallel):
        return Parallel(tuple(tuple(_renamed(x) for x in branch) for branch in st.branches))
    if isinstance(st, Compute | Comm):
        return replace(st, name=PREFIX + st.name)
    return st
