"""Multi-token prediction in the iteration DES: the verify pass and the draft passes as named stages."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.config.schema import ModelSpec
from moesim.hw.costs.roofline import ComputeCosts
from moesim.ir.blocks import attention_parts
from moesim.iteration.mtp import expected_tokens, verify_scenario
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.util.errors import ScenarioError


def decode(mtp=None, **workload):
    wl = {"mode": "decode", "tokens_per_gpu": 32, "context_tokens": 2048, **workload}
    if mtp is not None:
        wl["mtp"] = mtp
    return scenario_from_dict({"seed": 5, "model": {"base": "deepseek-v2-lite", "num_hidden_layers": 4},
                               "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 2}, "workload": wl})


def test_expected_tokens_per_step_by_hand():
    assert expected_tokens(decode({"draft_tokens": 2, "acceptance": [0.8, 0.5]})) == pytest.approx(1 + 0.8 + 0.4)
    assert expected_tokens(decode({"draft_tokens": 1})) == pytest.approx(1.85)  # DeepSeek-V3's 85%
    assert expected_tokens(decode()) == 1.0


def test_verify_then_one_draft_pass_per_drafted_token():
    """Two drafts over 32 sequences per GPU: the main model's rows are exactly the verify pass run alone (96
    tokens per GPU, 3 queries per sequence); then two draft rows of the MTP module, its stages named
    mtp_draft_*; the step emits 32 x 2 GPUs x (1 + a + a²) tokens at acceptance a = 0.5."""
    s = decode({"draft_tokens": 2, "acceptance": 0.5})
    res = run_scenario(s).summary
    verify = run_scenario(verify_scenario(s)).summary
    main = [r for r in res.layers if not any(k.startswith("mtp_draft_") for k in r.stages)]
    drafts = [r for r in res.layers if r not in main]
    assert sum(r.time_s for r in main) == pytest.approx(verify.iteration_time_s, rel=1e-9)
    assert len(drafts) == 2 and all(r.block >= s.model.num_hidden_layers for r in drafts)
    assert {"mtp_draft_routed_experts", "mtp_draft_dispatch", "mtp_draft_head"} <= set(res.totals.stages)
    assert res.iteration_time_s == pytest.approx(verify.iteration_time_s + sum(r.time_s for r in drafts))
    assert res.tokens_per_iteration == pytest.approx(32 * 2 * 1.75)
    assert verify_scenario(s).workload.tokens_per_gpu == 96 and verify_scenario(s).workload.decode_queries == 3


def test_a_verify_pass_reads_each_cache_once():
    """64 query tokens as 32 sequences of 2 queries read half the KV bytes of 64 sequences: on a
    bandwidth-bound GQA core the time halves (FLOPs stay those of 64 queries)."""
    m = ModelSpec(name="t", hidden_size=1024, moe_intermediate_size=256, n_routed_experts=8, num_experts_per_tok=2,
                  num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=1, head_dim=128, vocab_size=1000)
    c = ComputeCosts(1e18, 1e18, 1e12, 1.0, 1.0, 0.0, 1)
    tok = np.array([64.0])
    one = attention_parts(tok, m, c, True, 32768)[1]
    two = attention_parts(tok, m, c, True, 32768, queries=2)[1]
    assert two[0] == pytest.approx(one[0] / 2, rel=0.01)


@pytest.mark.parametrize("workload, match", [
    ({"mode": "prefill", "mtp": {"draft_tokens": 1}}, "decode iterations"),
    ({"decode_queries": 3}, "must divide"),
])
def test_bad_mtp_iterations_are_refused(workload, match):
    with pytest.raises(ScenarioError, match=match):
        decode(**workload)
