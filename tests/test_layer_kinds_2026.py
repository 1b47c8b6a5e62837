"""Layer kinds of 2026 models, by hand: Gated DeltaNet linear attention (constant state, cost flat in context),
DeepSeek sparse attention (top-k keys plus an indexer over every key), and the importer's q_lora_rank 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moesim.config.hf import from_hf_config
from moesim.config.schema import ModelSpec
from moesim.hw.costs.roofline import ComputeCosts
from moesim.ir.blocks import attention_parts
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.layers import LAYER_KINDS, kv_bytes_all_blocks, kv_cache_bytes, state_bytes_all_blocks

FIX = Path(__file__).parent / "fixtures" / "hf-configs"


def qwen35() -> ModelSpec:
    cfg = json.loads((FIX / "Qwen--Qwen3.5-35B-A3B" / "config.json").read_text())
    return ModelSpec(**from_hf_config(cfg, "qwen3.5-35b-a3b"))


def test_gated_deltanet_keeps_a_state_not_a_cache():
    """Qwen3.5-35B-A3B: 30 linear blocks of 32 value heads with a 128 x 128 FP32 state, a 4-tap conv over
    q, k, v (2 x 16 x 128 + 32 x 128 channels, 3 steps kept in BF16); 10 full blocks with 2 KV heads of 256."""
    m = qwen35()
    assert m.attention_kinds.count("linear") == 30 and m.attention_kinds.count("full") == 10
    state = 32 * 128 * 128 * 4 + 3 * (2 * 16 * 128 + 32 * 128) * 2
    assert LAYER_KINDS.get("linear").state_bytes(m) == state
    assert state_bytes_all_blocks(m) == 30 * state
    assert kv_bytes_all_blocks(m) == 10 * 2 * 2 * 256 * 2  # K and V, BF16: the full blocks only
    assert kv_cache_bytes(m, 4096) == 30 * state + 4096 * 10 * 2048
    assert kv_cache_bytes(m, 100_000) - kv_cache_bytes(m, 4096) == (100_000 - 4096) * 10 * 2048


def _core(m, kind, decode, context, tokens=64.0):
    c = ComputeCosts(989e12, 989e12, 3.35e12, 1.0, 1.0, 0.0, 128)
    return attention_parts(np.array([tokens]), m, c, decode, context, kind=LAYER_KINDS.get(kind))[1][0]


def test_linear_attention_costs_the_same_at_any_context():
    m = qwen35()
    assert _core(m, "linear", True, 1024) == pytest.approx(_core(m, "linear", True, 131072))
    assert _core(m, "linear", False, 1024) == pytest.approx(_core(m, "linear", False, 131072))
    assert _core(m, "gqa", True, 131072) > 10 * _core(m, "gqa", True, 1024)  # full attention does not


def test_dsa_attends_over_its_top_k_and_indexes_every_key():
    """DeepSeek-V3.2: the MLA core over min(context, 2,048) keys; the indexer's 64 heads of 128 score every
    cached key: 2 x 64 x 128 FLOPs per key per query, and reads 132 B per key (FP8 key + FP32 scale)."""
    cfg = json.loads((FIX / "deepseek-ai--DeepSeek-V3.2" / "config.json").read_text())
    m = ModelSpec(**from_hf_config(cfg, "v3.2"))
    assert set(m.attention_kinds) == {"dsa"}
    dsa, mla = LAYER_KINDS.get("dsa"), LAYER_KINDS.get("mla")
    assert dsa.attended(m, 100_000) == 2048 and dsa.attended(m, 1000) == 1000
    assert dsa.kv_bytes_per_token(m) == mla.kv_bytes_per_token(m) + 132
    flops, read = dsa.side_work(m, np.array([8.0]), True, 100_000)
    assert flops[0] == 8 * 2 * 64 * 128 * 100_000 and read[0] == 8 * 100_000 * 132
    core_short = dsa.core_work(m, np.array([8.0]), True, 4096)[0][0]
    core_long = dsa.core_work(m, np.array([8.0]), True, 100_000)[0][0]
    assert core_short == core_long  # both attend over 2,048 keys


def test_deepseek_native_config_with_q_lora_rank_zero_imports():
    """DeepSeek's inference/configs/config_16B.json writes q_lora_rank 0 for 'no query LoRA'."""
    native = {"vocab_size": 102400, "dim": 2048, "inter_dim": 10944, "moe_inter_dim": 1408, "n_layers": 27,
              "n_dense_layers": 1, "n_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2,
              "n_activated_experts": 6, "route_scale": 1.0, "q_lora_rank": 0, "kv_lora_rank": 512,
              "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "mscale": 0.707}
    m = ModelSpec(**from_hf_config(native, "deepseek-16b"))
    assert not m.q_lora_rank and m.kv_lora_rank == 512
    mla = LAYER_KINDS.get("mla")
    assert mla.projections(m)[0] == (16 * 192, 2048)  # q straight from the hidden state


def test_a_qwen35_hybrid_runs_on_8_h200():
    s = scenario_from_dict({"model": {"hf_config": str(FIX / "Qwen--Qwen3.5-35B-A3B" / "config.json")},
                            "cluster": {"gpu": "h200", "nodes": 1, "gpus_per_node": 8},
                            "workload": {"mode": "decode", "tokens_per_gpu": 64, "context_tokens": 32768}})
    sm = run_scenario(s).summary
    assert sm.meta["attention_kind"] == "linear+gqa" and sm.iteration_time_s > 0
    assert sm.meta["memory_per_gpu"]["kv_cache_bytes"] == pytest.approx(64 * kv_cache_bytes(s.model, 32768))


def nemotron() -> ModelSpec:
    cfg = json.loads((FIX / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" / "config.json").read_text())
    return ModelSpec(**from_hf_config(cfg, "nemotron-3-nano"))


def test_mamba2_blocks_keep_a_state_and_ffn_only_blocks_mix_nothing():
    """Nemotron 3 Nano: 23 Mamba-2 blocks of 64 heads x 64 with a 128-wide FP32 state and a 4-tap conv over
    x, B, C (4,096 + 2 x 8 x 128 channels, 3 steps in BF16); 6 attention blocks; 23 MoE blocks without a
    mixer. Squared-ReLU experts: 2 x H x F parameters each."""
    m = nemotron()
    assert m.attention_kinds.count("mamba") == 23 and m.attention_kinds.count("none") == 23
    assert m.ffn_kinds.count("moe") == 23 and m.ffn_kinds.count("none") == 29
    state = 64 * 64 * 128 * 4 + 3 * (4096 + 2 * 8 * 128) * 2
    assert LAYER_KINDS.get("mamba").state_bytes(m) == state and state_bytes_all_blocks(m) == 23 * state
    assert kv_bytes_all_blocks(m) == 6 * 2 * 2 * 128 * 2
    none = LAYER_KINDS.get("none")
    assert none.params(m) == 0 and none.kv_bytes_per_token(m) == 0 and not none.mixes
    from moesim.model.moe import MoEModel
    assert MoEModel.from_spec(m).expert_params == 2 * 2688 * 1856


def test_mamba_costs_the_same_at_any_context():
    m = nemotron()
    assert _core(m, "mamba", True, 1024) == pytest.approx(_core(m, "mamba", True, 262144))
    assert _core(m, "none", True, 1024) == 0


def test_nemotron_runs_on_one_h100():
    s = scenario_from_dict({"model": {"hf_config": str(FIX / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" /
                                                        "config.json")},
                            "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 1},
                            "workload": {"mode": "decode", "tokens_per_gpu": 16, "context_tokens": 8192}})
    sm = run_scenario(s).summary
    assert sm.meta["attention_kind"] == "mamba+none+gqa" and sm.totals.stages.get("dense_ffn", 0.0) == 0.0
    assert len(sm.layers) == 23


def test_deepseek_v4_compressed_attention_by_hand():
    """DeepSeek-V4-Flash: csa blocks pool 4 tokens to one and attend over the indexer's 512 picks plus a
    128-token window; hca blocks pool 128 to one and attend over all of them plus the window. At 1M tokens
    of context: csa caches 262,144 + 128 entries and reads 512 + 128; hca caches and reads 8,192 + 128."""
    cfg = json.loads((FIX / "deepseek-ai--DeepSeek-V4-Flash" / "config.json").read_text())
    m = ModelSpec(**from_hf_config(cfg, "v4-flash"))
    assert m.attention_kinds[:4] == ("sliding", "sliding", "csa", "hca")
    csa, hca = LAYER_KINDS.get("csa"), LAYER_KINDS.get("hca")
    ctx = 1_048_576
    assert csa.cached(m, ctx) == ctx / 4 + 128 and csa.attended(m, ctx) == 512 + 128
    assert hca.cached(m, ctx) == ctx / 128 + 128 and hca.attended(m, ctx) == ctx / 128 + 128
    assert csa.kv_bytes_per_token(m) == 512 * 2 + 132 and hca.kv_bytes_per_token(m) == 512 * 2
    flops, _ = csa.side_work(m, np.array([1.0]), True, ctx)
    assert flops[0] == 2 * 64 * 128 * ctx / 4 and hca.side_work(m, np.array([1.0]), True, ctx)[0][0] == 0


def test_gemma4_global_layers_have_their_own_heads_and_keys_are_values():
    """Gemma 4 26B-A4B: 25 sliding blocks of 8 KV heads x 256 (K and V cached) and 5 global blocks of 2 KV
    heads x 512 whose keys are the values (one tensor cached, no v_proj)."""
    cfg = json.loads((FIX / "google--gemma-4-26B-A4B" / "config.json").read_text())
    m = ModelSpec(**from_hf_config(cfg, "gemma4"))
    full = LAYER_KINDS.get("gqa")  # the default kind of Gemma 4's global blocks (2 < 16 KV heads)
    sliding = LAYER_KINDS.get("sliding")
    assert full.kv_bytes_per_token(m) == 2 * 512 * 2 and sliding.kv_bytes_per_token(m) == 8 * 2 * 256 * 2
    h = 2816
    assert full.params(m) == h * (16 * 512 + 2 * 512) + 16 * 512 * h
    assert sliding.params(m) == h * (16 * 256 + 8 * 512) + 16 * 256 * h
    assert kv_bytes_all_blocks(m) == 5 * 2048 + 25 * 8192


def test_kimi_k3_kda_blocks_and_latent_experts_by_hand():
    """Kimi-K3: KDA blocks are Gated DeltaNet with 96 key and value heads of 128 plus a full-rank forget gate
    per key channel (H x 96 x 128 more weights); routed experts run in the 3,584-wide latent (3 x 3,584 x
    3,072 each) and dispatch moves latent tokens."""
    cfg = json.loads((FIX / "moonshotai--Kimi-K3" / "config.json").read_text())
    m = ModelSpec(**from_hf_config(cfg, "kimi-k3"))
    plain = m.model_copy(update={"linear_channel_gate": False})
    lin = LAYER_KINDS.get("linear")
    assert lin.params(m) - lin.params(plain) == 7168 * 96 * 128
    from moesim.model.moe import MoEModel, copy_bytes
    moe = MoEModel.from_spec(m)
    assert moe.expert_hidden == 3584 and moe.expert_params == 3 * 3584 * 3072
    from moesim.ir.resolve import resolve
    s = scenario_from_dict({"model": {"hf_config": str(FIX / "moonshotai--Kimi-K3" / "config.json"),
                                      "num_hidden_layers": 4},
                            "cluster": {"gpu": "gb300", "nodes": 1}, "placement": {"redundant_experts": 40},
                            "workload": {"mode": "decode", "tokens_per_gpu": 8}})
    assert resolve(s).dispatch_copy_bytes == copy_bytes(3584, s.comm.dispatch_dtype)
