"""Deployment layouts by hand: tensor-parallel experts (``workload.moe_tp``), their all-reduce, memory per GPU,
and the layouts the checks refuse."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from moesim import api
from moesim.cli import main
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.layers import LAYER_KINDS
from moesim.model.memory import memory_per_gpu, param_counts
from moesim.util.errors import ScenarioError
from tests.conftest import TOY_GPU

ROOT = Path(__file__).resolve().parent.parent


def _toy_tp(tokens=2, t=2, **workload):
    return scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                               "cluster": {"gpu": dict(TOY_GPU), "nodes": 1, "gpus_per_node": 2},
                               "workload": {"tokens_per_gpu": tokens, "scope": "moe_layers", "attention_tp": t,
                                            "moe_tp": t, **workload}})


def test_moe_tp_all_reduce_bytes_and_time_by_hand():
    """2 GPUs, TP 2, 2 tokens per GPU: the group's 4 tokens x 4,096 x 2 B = 32,768 B; a ring all-reduce sends
    2(t-1)/t of it from each GPU to the other: 32,768 B each way, at the toy 100 B/s NVLink (no latency):
    327.68 s, twice per iteration (two MoE layers). No dispatch, no combine."""
    doc = api.run_scenario(_toy_tp()).doc
    stages = doc["totals"]["stages"]
    assert "dispatch" not in stages and "combine" not in stages
    assert stages["moe_allreduce"] == pytest.approx(2 * 327.68, rel=1e-9)
    assert doc["totals"]["intra_node_bytes"] == pytest.approx(2 * 2 * 32768)
    assert doc["totals"]["inter_node_bytes"] == 0


def test_moe_tp_runs_every_expert_a_tp_th_as_wide_on_the_groups_tokens():
    """Mixtral experts (F 14,336) sharded over 2 GPUs with 64 tokens each: each GPU runs all 128 group tokens'
    copies through experts of width 7,168, exactly what one GPU holding the whole group's 128 tokens and
    experts of width 7,168 does (the same 128 routed tokens: one routing stream per layer)."""
    doc = api.run_scenario(_toy_tp(tokens=64)).doc
    half = {"base": "mixtral-8x7b", "num_hidden_layers": 2, "moe_intermediate_size": 7168}
    one = scenario_from_dict({"model": half,
                              "cluster": {"gpu": dict(TOY_GPU), "nodes": 1, "gpus_per_node": 1},
                              "workload": {"tokens_per_gpu": 128, "scope": "moe_layers"}})
    ref = api.run_scenario(one).doc
    assert doc["totals"]["stages"]["routed_experts"] == pytest.approx(ref["totals"]["stages"]["routed_experts"],
                                                                      rel=1e-12)
    per_gpu = [g["expert_tokens"] for g in doc["gpus"]]
    assert per_gpu[0] == per_gpu[1]  # both GPUs run the group's copies (each its half of every expert)
    assert sum(per_gpu) == pytest.approx(2 * 128 * 2)  # 2 layers x 128 tokens x top-2, each copy counted once


def test_memory_per_gpu_of_deepseek_v3_tp8_and_ep8_by_hand():
    """DeepSeek-V3 FP8 on 8 H200: TP8 (every expert 1/8 on each GPU, attention, dense FFNs and shared experts
    1/8) against EP8 with data-parallel attention (32 whole experts per GPU, attention, dense FFNs and shared
    experts replicated). The routed experts come to the same bytes; the rest differs by the sharding."""
    def scen(**w):
        return scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "h200", "nodes": 1, "gpus_per_node": 8},
                                   "workload": {"mode": "decode", "tokens_per_gpu": 16, "context_tokens": 1024, **w}})
    tp, ep = memory_per_gpu(scen(attention_tp=8, moe_tp=8)), memory_per_gpu(scen())
    m = scen().model
    expert = 3 * 7168 * 2048  # FP8: one byte each
    assert tp["expert_weights_bytes"] == ep["expert_weights_bytes"] == 256 / 8 * expert * 58
    p = param_counts(m)
    assert tp["other_weights_bytes"] == (p.attention / 8 + p.dense_ffn / 8 + p.shared_experts / 8 + p.router) + \
        p.embeddings * 2
    assert ep["other_weights_bytes"] == (p.attention + p.dense_ffn + p.shared_experts + p.router) + p.embeddings * 2
    kvb = LAYER_KINDS.get("mla").kv_bytes_per_token(m)  # (512 + 64) x 2 B
    assert kvb == 1152
    # MLA's latent is whole on every TP rank: each holds the group's 8 x 16 sequences
    assert tp["kv_cache_bytes"] == 16 * 1024 * 1152 * 61 * 8
    assert ep["kv_cache_bytes"] == 16 * 1024 * 1152 * 61
    assert tp["dispatch_buffers_bytes"] == 0 and ep["dispatch_buffers_bytes"] > 0


@pytest.mark.parametrize("workload, said", [
    ({"attention_tp": 8, "moe_tp": 3}, "moe_tp 3 does not divide attention_tp 8"),
    ({"attention_tp": 2, "moe_tp": 2, "mode": "training"}, "backward pass of experts inside an attention TP group"),
    ({"attention_tp": 3}, "attention_tp 3 does not split the 128 attention heads"),
    ({"attention_tp": 16}, "attention_tp 16 does not divide 8 GPUs per node"),
])
def test_impossible_layouts_are_one_line_and_exit_2(tmp_path, workload, said):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"model": {"base": "deepseek-v3", "num_hidden_layers": 4},
                                "cluster": {"gpu": "h200", "nodes": 1, "gpus_per_node": 8}, "workload": workload}))
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 2 and said in r.output and "\n" not in r.output.strip()


def test_attention_tp_must_divide_the_heads():
    with pytest.raises(ScenarioError, match="workload.attention_tp.*heads"):
        scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_attention_heads": 12, "num_key_value_heads": 4},
                            "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 8},
                            "workload": {"attention_tp": 8}})


def test_moe_tp_refuses_redundant_experts_and_unsplittable_experts():
    with pytest.raises(ScenarioError, match="redundant experts"):
        scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                            "cluster": {"gpu": "h100", "gpus_per_node": 2}, "placement": {"redundant_experts": 2},
                            "workload": {"attention_tp": 2, "moe_tp": 2}})
    with pytest.raises(ScenarioError, match="does not split into 4"):
        scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2, "moe_intermediate_size": 1002},
                            "cluster": {"gpu": "h100", "gpus_per_node": 4},
                            "workload": {"attention_tp": 4, "moe_tp": 4}})
    assert np.isfinite(api.run_scenario(_toy_tp(tokens=4)).summary.iteration_time_s)


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "e2e" / "inferencex-dsr1-h200.csv"
SHIPPED_ROWS = Path(__file__).resolve().parents[1] / "moesim" / "studies" / "e2e" / "data" / "inferencex-dsr1-h200.csv"


def _converter():
    spec = importlib.util.spec_from_file_location("ix_convert", ROOT / "scenarios" / "inferencex" / "convert.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_inferencex_row_is_a_scenario_moesim_check_accepts(tmp_path):
    """The shipped converter (scenarios/inferencex/convert.py) writes one scenario per measured row: TP8 with
    tensor-parallel experts, EP8 with data-parallel attention, disaggregated sides of different layouts,
    closed-loop concurrency, 80-100% length draws, MTP; `moesim check` accepts every one."""
    rows = REFERENCE if REFERENCE.is_file() else SHIPPED_ROWS
    paths = _converter().convert(rows, tmp_path)
    assert len(paths) == 50
    layouts = set()
    for p in paths:
        r = CliRunner().invoke(main, ["check", str(p), "--json"])
        assert r.exit_code == 0, (p.name, r.output)
        doc = json.loads(r.stdout)
        dep = doc["serving"]["deployment"]
        layouts.add((dep["kind"], doc["workload"]["moe_tp"], doc["workload"]["attention_tp"]))
        assert doc["serving"]["load"]["concurrency"] >= 1
    assert {("aggregated", 8, 8), ("aggregated", 1, 8), ("aggregated", 1, 1)} <= layouts


def test_attention_tp_across_two_nodes_all_reduce_by_hand():
    """TP 4 over 2 nodes of 2 toy GPUs (NVLink 100 B/s, one 50 B/s NIC per GPU): the ring 0 -> 1 -> 2 -> 3 -> 0
    crosses the NICs on 1 -> 2 and 3 -> 0. Each GPU sends 2(t-1)/t of the group's 4 tokens x 4,096 x 2 B =
    49,152 B; the crossing hops take 49,152 / 50 = 983.04 s, so every layer's tp_allreduce does."""
    s = scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                            "cluster": {"gpu": dict(TOY_GPU), "nodes": 2, "gpus_per_node": 2},
                            "workload": {"mode": "decode", "tokens_per_gpu": 1, "attention_tp": 4}})
    doc = api.run_scenario(s).doc
    assert doc["totals"]["stages"]["tp_allreduce"] == pytest.approx(2 * 983.04, rel=1e-9)
    with pytest.raises(ScenarioError, match="nor is it whole nodes"):
        scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                            "cluster": {"gpu": dict(TOY_GPU), "nodes": 3, "gpus_per_node": 2},
                            "workload": {"attention_tp": 4}})


def test_tp_by_ep_inside_the_attention_group_by_hand():
    """Attention TP 4 on one node of 4 toy GPUs with moe_tp 2: two EP ranks of 4 Mixtral experts each, every
    expert sharded over the rank's 2 GPUs. GPUs 0 and 1 run experts 0-3 on the group's 8 tokens' copies, GPUs 2
    and 3 experts 4-7; each copy counts once (half on each of its rank's GPUs). The MoE output is all-reduced
    over the 4 GPUs: 2(4-1)/4 x 8 tokens x 4,096 x 2 B = 98,304 B from each GPU. Memory: E/4 = 2 experts'
    worth of weights per GPU and layer."""
    s = scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                            "cluster": {"gpu": dict(TOY_GPU), "nodes": 1, "gpus_per_node": 4},
                            "workload": {"tokens_per_gpu": 2, "scope": "moe_layers", "attention_tp": 4,
                                         "moe_tp": 2}})
    res = api.run_scenario(s)
    st = res.built.stats[0]
    assert st.gpu_tokens[0] == st.gpu_tokens[1] and st.gpu_tokens[2] == st.gpu_tokens[3]
    assert st.gpu_tokens.sum() == pytest.approx(st.copies) == 8 * 2
    first_rank = res.built.pieces[0]
    assert first_rank.moe_allreduce.nbytes[0] == pytest.approx(2 * 3 / 4 * 8 * 4096 * 2)
    mem = memory_per_gpu(s)
    expert = 3 * 4096 * 14336 * 2  # BF16
    assert mem["expert_weights_bytes"] == 8 / 4 * expert * 2
