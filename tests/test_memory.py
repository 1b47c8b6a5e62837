"""Parameter counts against published totals, and memory per GPU (fits, does not fit, KV scaling)."""

import pytest

from moesim import api
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import memory_per_gpu, param_counts

NO_SHAPE = {"name": "noshape", "hidden_size": 1024, "moe_intermediate_size": 512, "n_routed_experts": 8,
            "num_experts_per_tok": 2, "num_hidden_layers": 2}


def scen(model="deepseek-v3", nodes=1, **workload):
    return scenario_from_dict({"model": model, "cluster": {"gpu": "h800", "nodes": nodes, "gpus_per_node": 8},
                               "workload": workload})


@pytest.mark.parametrize("model, total, active, rel_total", [
    ("deepseek-v3", 671e9, 37e9, 0.01),        # DeepSeek-V3 technical report (arXiv 2412.19437), abstract
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.01),    # Mistral AI, "Mixtral of experts" announcement
    ("qwen3-235b-a22b", 235e9, 22e9, 0.01),    # Qwen3 release: 235B total, 22B activated
    ("qwen3-30b-a3b", 30.5e9, 3.3e9, 0.01),    # Qwen3 release: 30.5B total, 3.3B activated
    ("deepseek-v2", 236e9, 21e9, 0.01),        # DeepSeek-V2 paper (arXiv 2405.04434), abstract
    ("deepseek-v2-lite", 15.7e9, None, 0.01),  # same paper; its 2.4B active excludes what we count (see note)
    ("kimi-k2", 1.0e12, 32e9, 0.03),           # Moonshot: "1T total, 32B activated" (total rounded)
    ("mixtral-8x22b", 141e9, 39e9, 0.01),      # Mistral AI, Mixtral 8x22B announcement
    ("qwen1.5-moe-a2.7b", 14.3e9, 2.7e9, 0.01),  # Qwen1.5-MoE blog
    ("qwen2-57b-a14b", 57.4e9, 14e9, 0.01),    # Qwen2 technical report
    ("olmoe-1b-7b", 6.9e9, 1.3e9, 0.01),       # OLMoE paper (arXiv 2409.02060)
    ("dbrx", 132e9, 36e9, 0.01),               # Databricks DBRX announcement
    ("llama4-scout", 109e9, 17e9, 0.02),       # Meta Llama 4 model card (107.8B counted here: -1.1%)
    ("llama4-maverick", 400e9, 17e9, 0.01),    # Meta Llama 4 model card
    ("gpt-oss-120b", 117e9, None, 0.01),       # OpenAI gpt-oss model card; its 5.1B active counts differently
])
def test_parameter_counts_match_published_totals(model, total, active, rel_total):
    one_gpu = scenario_from_dict({"model": model, "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 1}})
    p = param_counts(one_gpu.model)
    assert p.total == pytest.approx(total, rel=rel_total)
    if active:  # the publisher's convention: DeepSeek, Moonshot and OpenAI leave the input embedding out
        counted = p.active if model.startswith(("deepseek", "kimi", "gpt-oss")) else p.active_with_embedding
        assert counted == pytest.approx(active, rel=0.03)


def test_memory_reports_what_does_not_fit_and_by_how_much():
    small = memory_per_gpu(scen(nodes=1))  # 256 FP8 experts x 58 layers over 8 GPUs: ~82 GB of experts alone
    assert not small["fits"] and small["over_by_bytes"] == pytest.approx(small["total_bytes"] - 80e9)
    big = memory_per_gpu(scen(nodes=4))
    assert big["fits"] and big["expert_weights_bytes"] == pytest.approx(small["expert_weights_bytes"] / 4)


def test_decode_kv_cache_grows_linearly_with_context():
    a = memory_per_gpu(scen(nodes=4, mode="decode", tokens_per_gpu=64, context_tokens=2048))
    b = memory_per_gpu(scen(nodes=4, mode="decode", tokens_per_gpu=64, context_tokens=4096))
    assert b["kv_cache_bytes"] == pytest.approx(2 * a["kv_cache_bytes"])
    # MLA caches 512 + 64 elements per token per block (BF16): 61 blocks
    assert a["kv_cache_bytes"] == pytest.approx(64 * 2048 * 576 * 2 * 61)


def test_run_summary_carries_memory_and_says_when_unknown():
    doc = api.run_scenario(scen(nodes=4, tokens_per_gpu=256)).doc
    assert doc["memory_per_gpu"]["known"] and doc["memory_per_gpu"]["fits"]
    s = scenario_from_dict({"model": NO_SHAPE, "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 8},
                            "workload": {"tokens_per_gpu": 64}})
    assert memory_per_gpu(s)["known"] is False


def test_layer_specs_of_deepseek_v3_by_hand():
    """61 blocks: the first 3 dense (intermediate 18,432), then 58 MoE blocks of 256 experts of 2,048; MLA in
    every block; the attention parameters are the MLA formula per block times 61."""
    from moesim.model.layers import LAYER_KINDS, attention_params_all, layer_specs

    m = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "h800"}}).model
    specs = layer_specs(m)
    assert len(specs) == 61 and {s.attention for s in specs} == {"mla"}
    assert [(s.ffn, s.ffn_inter) for s in specs[:4]] == [("dense", 18432)] * 3 + [("moe", 2048)]
    assert sum(s.ffn == "moe" for s in specs) == 58 and specs[3].experts == 256
    h, heads, q, kv, nope, rope, v = 7168, 128, 1536, 512, 128, 64, 128
    per_block = h * q + q * heads * (nope + rope) + h * (kv + rope) + kv * heads * (nope + v) + heads * v * h
    assert LAYER_KINDS.get("mla").params(m) == per_block
    assert attention_params_all(m) == 61 * per_block
