"""Mixed prefill+decode iterations (the iteration DES's ``mode: mixed``, the serving ``mixed`` policy and the
composition of its cost from the surfaces) and engine profiles (``serving.engine``), with answers by hand."""

from __future__ import annotations

import pytest

from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import kv_cache_bytes, memory_per_gpu
from moesim.serve import simulate_serving
from moesim.serve.deploy import deployment_of
from moesim.serve.engines import ENGINES, scheduling
from moesim.serve.run import check_fits, requests_of
from moesim.serve.surface import Surface, mixed_time
from moesim.util.errors import ScenarioError


def iteration(**workload):
    return scenario_from_dict({"seed": 5, "model": {"base": "deepseek-v2-lite", "num_hidden_layers": 4},
                               "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 2},
                               "workload": workload})


def serving(serving: dict, gpn: int = 1, **extra):
    return scenario_from_dict({"seed": 3, "model": {"base": "mixtral-8x7b", "num_hidden_layers": 4},
                               "cluster": {"gpu": "h200", "nodes": 1, "gpus_per_node": gpn}, "serving": serving,
                               **extra})


# ---- the iteration DES: mode mixed ------------------------------------------------------------------------
def test_a_mixed_batch_without_decode_tokens_is_a_prefill():
    """256 prompt tokens of 128-token sequences: the same stages and times as mode prefill (two outputs per
    GPU in both heads, since 256 / 128 >= 1)."""
    pre = run_scenario(iteration(mode="prefill", tokens_per_gpu=256, context_tokens=128)).summary
    mix = run_scenario(iteration(mode="mixed", tokens_per_gpu=256, context_tokens=128)).summary
    assert mix.iteration_time_s == pytest.approx(pre.iteration_time_s, rel=1e-12)
    assert mix.totals.stages == pytest.approx(pre.totals.stages, rel=1e-12)


def test_decode_tokens_add_their_attention_over_their_own_context():
    """Moving 32 of 256 tokens to decode over a 16k-token KV cache reads that cache: the attention core grows
    with the decode context, while the MoE layers see the same 256 tokens."""
    short = run_scenario(iteration(mode="mixed", tokens_per_gpu=256, context_tokens=128, decode_tokens_per_gpu=32,
                                   decode_context_tokens=128)).summary
    long = run_scenario(iteration(mode="mixed", tokens_per_gpu=256, context_tokens=128, decode_tokens_per_gpu=32,
                                  decode_context_tokens=16384)).summary
    assert long.totals.stages["attention_core"] > 2 * short.totals.stages["attention_core"]
    assert long.totals.stages["routed_experts"] == pytest.approx(short.totals.stages["routed_experts"], rel=1e-9)


def test_mixed_memory_holds_the_decode_sequences_kv_cache():
    s = iteration(mode="mixed", tokens_per_gpu=256, context_tokens=128, decode_tokens_per_gpu=32,
                  decode_context_tokens=4096)
    assert memory_per_gpu(s)["kv_cache_bytes"] == pytest.approx(32 * kv_cache_bytes(s.model, 4096, 1))


@pytest.mark.parametrize("workload, match", [
    ({"mode": "mixed", "tokens_per_gpu": 16, "decode_tokens_per_gpu": 32}, "exceeds the batch"),
    ({"mode": "prefill", "decode_tokens_per_gpu": 8}, "describe a mixed batch"),
    ({"mode": "mixed", "tokens_per_gpu": 64, "decode_tokens_per_gpu": 7, "micro_batches": 2}, "must be even"),
])
def test_bad_mixed_batches_are_refused(workload, match):
    with pytest.raises(ScenarioError, match=match):
        iteration(**workload)


def test_the_composition_matches_direct_mixed_runs():
    """mixed_time from a prefill and a decode surface (one grid point each, built from direct runs) against
    the direct mixed run: within 2% (the composition subtracts the decode tokens' share of the prefill
    attention core and adds theirs from the decode surface)."""
    t, c, d, dc = 512, 256, 64, 4096

    def point(mode, tokens, ctx):
        sm = run_scenario(iteration(mode=mode, tokens_per_gpu=tokens, context_tokens=ctx)).summary
        grp = sm.totals.stages.get("attention_core", 0.0)
        return Surface(mode, (tokens,), (ctx,), ((sm.iteration_time_s,),), ((1.0,),), (), ((grp,),))
    direct = run_scenario(iteration(mode="mixed", tokens_per_gpu=t, context_tokens=c, decode_tokens_per_gpu=d,
                                    decode_context_tokens=dc)).summary.iteration_time_s
    composed = mixed_time(point("prefill", t, c), point("decode", d, dc), t, c, d, dc)
    assert composed == pytest.approx(direct, rel=0.02)


def test_mixed_time_by_hand():
    """Prefill surface 10 ms with 2 ms of attention core at 100 tokens; decode surface's core 3 ms at
    20 tokens: 10 - 2 x 20/100 + 3 = 12.6 ms."""
    pre = Surface("prefill", (100,), (50,), ((0.010,),), ((1.0,),), (), ((0.002,),))
    dec = Surface("decode", (20,), (500,), ((0.005,),), ((1.0,),), (), ((0.003,),))
    assert mixed_time(pre, dec, 100, 50, 20, 500) == pytest.approx(0.0126)
    assert mixed_time(pre, dec, 100, 50, 0, 500) == pytest.approx(0.010)


# ---- the serving policy ---------------------------------------------------------------------------------
def _surfaces(dep, prefill_s=0.1, decode_s=0.02, group=0.0):
    flat = lambda m, t: Surface(m, (1,), (1,), ((t,),), ((1.0,),), (), ((group,),))  # noqa: E731
    return {(r.name, m): flat(m, prefill_s if m == "prefill" else decode_s) for r in dep.roles
            for m in ("prefill", "decode")}


def test_a_mixed_iteration_splits_the_budget_decode_first():
    """Budget 1,000 tokens, nine requests at once: eight 10-token prompts and one of 4,000. The first
    iteration is a prefill (nothing runs yet): the eight short prompts and 920 tokens of the long one. Then
    every iteration gives one token to each of the 8 running sequences and the 992 left to the long prompt:
    992, 992, 992 and the last 104 (8 + 104 = 112 tokens), after which all nine decode."""
    s = serving({"load": {"concurrency": 9}, "requests": 9,
                 "input_tokens": {"kind": "constant", "value": 10},
                 "output_tokens": {"kind": "constant", "value": 2000},
                 "scheduler": {"policy": "mixed", "token_budget": 1000, "max_batch": 64}})
    dep = deployment_of(s)
    req = requests_of(s)
    req.input_tokens[-1] = 4000  # the last request sent has a long prompt
    tl = simulate_serving(s, dep, req, _surfaces(dep)).timeline
    assert list(tl["kind"][:6]) == ["prefill", "mixed", "mixed", "mixed", "mixed", "decode"]
    assert list(tl["tokens_per_gpu"][:6]) == [1000, 1000, 1000, 1000, 112, 9]
    assert list(tl["running"][:6]) == [0, 8, 8, 8, 8, 9]


def test_mixed_policy_keeps_decoding_during_prefills():
    """Prefill-first stalls decoding for every admitted prompt; mixed never does: with flat surfaces (every
    iteration 20 ms decode / 100 ms prefill / mixed = prefill), TPOT under mixed stays at the iteration time of
    the batches the sequences ride in, below prefill-first's."""
    base = {"arrival": {"kind": "constant", "rate_per_s": 20}, "requests": 60,
            "input_tokens": {"kind": "constant", "value": 100}, "output_tokens": {"kind": "constant", "value": 50}}
    tpot = {}
    for pol in ("prefill_first", "mixed"):
        s = serving({**base, "scheduler": {"policy": pol, "token_budget": 1000}})
        dep = deployment_of(s)
        tpot[pol] = simulate_serving(s, dep, requests_of(s), _surfaces(dep)).summary["tpot_s"]["mean"]
    assert tpot["mixed"] < tpot["prefill_first"]


def test_trtllm_does_not_chunk_and_refuses_prompts_over_its_budget():
    s = serving({"engine": "trtllm", "requests": 4, "input_tokens": {"kind": "constant", "value": 9000}})
    dep = deployment_of(s)
    assert not dep.role("aggregated").sched.chunked_prefill
    with pytest.raises(ScenarioError, match="enters whole"):
        check_fits(dep, requests_of(s))


def test_unchunked_prompts_enter_whole():
    """Budget 1,000, no chunking, prompts of 600: one prompt per iteration (600 + 600 > 1,000)."""
    s = serving({"load": {"concurrency": 2}, "requests": 2, "input_tokens": {"kind": "constant", "value": 600},
                 "output_tokens": {"kind": "constant", "value": 1},
                 "scheduler": {"token_budget": 1000, "chunked_prefill": False}})
    dep = deployment_of(s)
    tl = simulate_serving(s, dep, requests_of(s), _surfaces(dep)).timeline
    assert list(tl["tokens_per_gpu"]) == [600, 600]


# ---- engine profiles ------------------------------------------------------------------------------------
def test_engine_limits_are_per_rank_and_sglang_budget_per_instance():
    s = serving({"engine": "vllm"}).serving.scheduler
    dp = scheduling(s, "vllm", 8, 1)  # 8 DP-attention ranks
    tp = scheduling(s, "vllm", 8, 8)  # one TP8 engine
    assert (dp.budget, dp.max_running) == (8 * 8192, 8 * 1024) and (tp.budget, tp.max_running) == (8192, 1024)
    assert dp.policy_name == "mixed" and dp.admission == "optimistic"
    sg = scheduling(s, "sglang", 8, 1)
    assert (sg.budget, sg.max_running, sg.policy_name) == (8192, 8 * 2048, "prefill_first")
    trt = scheduling(s, "trtllm", 8, 1)
    assert trt.admission == "guaranteed_no_evict" and trt.graphs == () and not trt.chunked_prefill


def test_scenario_fields_override_the_engine_profile():
    spec = serving({"engine": "vllm", "scheduler": {"token_budget": 100, "admission": "guaranteed_no_evict"}})
    sc = scheduling(spec.serving.scheduler, "vllm", 4, 1)
    assert sc.budget == 400 and sc.admission == "guaranteed_no_evict" and sc.max_running == 4 * 1024
    none = scheduling(spec.serving.scheduler, None, 4, 1)
    assert none.max_running == 4 * 256 and none.policy_name == "prefill_first"


def test_cuda_graph_padding_per_rank():
    """vLLM captures 1, 2, 4, 8, 16, ...: a TP2 rank with 3 sequences per GPU holds 6, padded to 8, 4 per GPU;
    SGLang's list has 12: a DP rank of 9 runs at 12."""
    spec = serving({}).serving.scheduler
    assert scheduling(spec, "vllm", 2, 2).pad(3) == 4
    assert scheduling(spec, "sglang", 8, 1).pad(9) == 12
    assert scheduling(spec, "sglang", 8, 1).pad(10_000) == 10_000  # above the largest: eager, no padding


def test_unknown_engine_is_one_clear_error():
    with pytest.raises(ScenarioError, match="serving.engine"):
        deployment_of(serving({"engine": "tgi"}))
    assert set(ENGINES.names()) == {"sglang", "vllm", "trtllm"}


def test_serve_reports_the_composition_error_against_direct_mixed_runs():
    """A served mixed-policy run checks the composed iteration times at two mixed batches of its own grids
    against direct runs of the iteration DES, and records the scheduler each role ran."""
    from moesim.exec.local import SerialExecutor
    from moesim.serve.run import serve
    s = serving({"engine": "vllm", "load": {"concurrency": 8}, "requests": 24,
                 "input_tokens": {"kind": "random", "value": 512}, "output_tokens": {"kind": "random", "value": 32}})
    doc = serve(s, SerialExecutor(), use_cache=False).summary
    check = doc["mixed_check"]["aggregated"]
    assert len(check["points"]) == 2 and check["max_error"] < 0.05
    assert all(p["decode_tokens_per_gpu"] < p["tokens_per_gpu"] for p in check["points"])
    assert doc["scheduling"]["aggregated"]["policy"] == "mixed"
    assert doc["scheduling"]["aggregated"]["token_budget_per_instance"] == 8192


def test_without_a_prefix_cache_every_prompt_token_is_computed():
    """prefix_hit 0.5 on 1,000-token prompts: 500 tokens computed with the cache, all 1,000 without."""
    base = {"load": {"concurrency": 1}, "requests": 1, "prefix_hit": 0.5,
            "input_tokens": {"kind": "constant", "value": 1000}, "output_tokens": {"kind": "constant", "value": 1}}
    for cache, computed in ((True, 500), (False, 1000)):
        s = serving({**base, "scheduler": {"prefix_cache": cache}})
        dep = deployment_of(s)
        tl = simulate_serving(s, dep, requests_of(s), _surfaces(dep)).timeline
        assert list(tl["tokens_per_gpu"]) == [computed]
