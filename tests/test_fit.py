"""Memory fit is part of validation: a deployment that does not fit in GPU memory is refused by `run`, `check`
and a sweep's point (exit 2, one line naming the biggest consumer and the fix) unless allowed as a what-if;
a context beyond the model's maximum is refused; the maximum comes from the model's config.json."""

import json

import pytest
from click.testing import CliRunner

from moesim import api
from moesim.cli.main import main
from moesim.config.hf import from_hf_config
from tests.test_hf_corpus import CORPUS

V3_BF16_A100 = """model: {base: deepseek-v3, weight_dtype: bf16}
cluster: {gpu: a100-80gb, nodes: 1, gpus_per_node: 8}
workload: {tokens_per_gpu: 256}
"""
SMALL = """model: {base: deepseek-v3, weight_dtype: bf16, num_hidden_layers: 8}
cluster: {gpu: a100-80gb, nodes: 1, gpus_per_node: 1}
workload: {mode: decode, tokens_per_gpu: 4, context_tokens: 1024}
"""


def test_deepseek_v3_bf16_on_8_a100_is_refused_naming_the_fix(tmp_path):
    (tmp_path / "s.yaml").write_text(V3_BF16_A100)
    for cmd in ("run", "check"):
        r = CliRunner().invoke(main, [cmd, str(tmp_path / "s.yaml")])
        assert r.exit_code == 2, r.output
        line = r.output.strip().splitlines()[-1]
        assert "needs 184.2 GiB per GPU" in line and "has 74.5 GiB" in line and "biggest is the expert weights" in line
        assert "cluster.nodes=4" in line and "--allow-oversubscribe" in line and "Traceback" not in r.output


def test_a_what_if_runs_and_says_so(tmp_path):
    (tmp_path / "s.yaml").write_text(SMALL)
    refused = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml")])
    assert refused.exit_code == 2 and "does not fit" not in refused.output and "GiB per GPU" in refused.output
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml"), "--allow-oversubscribe"])
    assert r.exit_code == 0, r.output
    assert "DOES NOT FIT" in r.output and "what-if run (--allow-oversubscribe)" in r.output
    doc = api.run(tmp_path / "s.yaml", ["sim.allow_oversubscribe=true"]).doc
    assert doc["memory_per_gpu"]["fits"] is False


def test_context_beyond_the_models_maximum_is_refused(tmp_path):
    (tmp_path / "s.yaml").write_text(SMALL)
    r = CliRunner().invoke(main, ["check", str(tmp_path / "s.yaml"), "--set", "workload.context_tokens=100000000"])
    assert r.exit_code == 2 and "exceeds deepseek-v3's maximum of 163,840 tokens" in r.output
    ok = CliRunner().invoke(main, ["check", str(tmp_path / "s.yaml"), "--allow-oversubscribe", "--set",
                                   "model.max_position_embeddings=200000000", "--set",
                                   "workload.context_tokens=100000000"])
    assert "exceeds" not in ok.output  # a longer-context variant says so itself


def test_the_maximum_context_is_read_from_config_json():
    cfg = json.loads((CORPUS / "meta-llama--Llama-4-Scout-17B-16E-Instruct" / "config.json").read_text())
    assert from_hf_config(cfg, "scout")["max_position_embeddings"] == 10485760  # nested in text_config


def test_a_sweep_point_that_does_not_fit_is_recorded_with_why(tmp_path):
    (tmp_path / "base.yaml").write_text(SMALL.replace("gpus_per_node: 1", "gpus_per_node: 2").replace(
        "num_hidden_layers: 8", "num_hidden_layers: 5"))
    (tmp_path / "sw.yaml").write_text("base: base.yaml\ngrid: {model.num_hidden_layers: [5, 12]}\n")
    r = CliRunner().invoke(main, ["sweep", str(tmp_path / "sw.yaml"), "-o", str(tmp_path / "o"), "-j", "1", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    bad = [row for row in rows if row.get("error")]
    assert len(bad) == 1 and bad[0]["model.num_hidden_layers"] == 12 and "GiB per GPU" in bad[0]["error"]


V3_TRAIN = """model: deepseek-v3
cluster: {gpu: h800, nodes: 4, gpus_per_node: 8}
workload: {mode: training, tokens_per_gpu: 4096, pipeline_stages: 4, accumulation_steps: 8}
"""


def test_training_counts_gradients_and_the_sharded_optimizer_state(tmp_path):
    """fp32 gradients (4 bytes) for every parameter a GPU holds, and Adam's master weights and moments (12
    bytes) shared over the GPUs holding the same parameter (Megatron's distributed optimizer): the experts'
    over ``data_parallel`` replicas, the other weights over those times the group's GPUs."""
    from moesim.iteration.scenario import scenario_from_dict
    from moesim.model.memory import memory_per_gpu, param_counts
    from moesim.model.moe import MoEModel

    def mem(d, mode="training"):
        return memory_per_gpu(scenario_from_dict({
            "model": {"base": "qwen3-30b-a3b", "weight_dtype": "bf16"}, "cluster": {"gpu": "h100", "nodes": 1},
            "workload": {"mode": mode, "tokens_per_gpu": 4096, "context_tokens": 4096, "data_parallel": d}}))

    one, four = mem(1), mem(4)
    s = scenario_from_dict({"model": {"base": "qwen3-30b-a3b", "weight_dtype": "bf16"}, "cluster": {"gpu": "h100"}})
    moe, p = MoEModel.from_spec(s.model), param_counts(s.model)
    experts = moe.expert_params * moe.num_moe_layers * s.model.n_routed_experts / 8  # per GPU
    other = p.attention + p.dense_ffn + p.shared_experts + p.router + p.embeddings  # every GPU holds them
    assert one["optimizer_state_bytes"] == pytest.approx(experts * 16 + other * (4 + 12 / 8), rel=1e-9)
    assert four["optimizer_state_bytes"] == pytest.approx(experts * (4 + 3) + other * (4 + 12 / 32), rel=1e-9)
    assert "optimizer_state_bytes" not in mem(1, "prefill")
    assert one["total_bytes"] - four["total_bytes"] == pytest.approx(
        one["optimizer_state_bytes"] - four["optimizer_state_bytes"])


def test_training_deepseek_v3_on_32_h800_is_refused_for_its_optimizer_state(tmp_path):
    (tmp_path / "s.yaml").write_text(V3_TRAIN)
    r = CliRunner().invoke(main, ["check", str(tmp_path / "s.yaml")])
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert "needs 354.4 GiB per GPU" in line and "biggest is the gradients and optimizer state" in line
    assert "workload.data_parallel" in line and "--allow-oversubscribe" in line
