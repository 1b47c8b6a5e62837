"""Every command through click's CliRunner, including the error path."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moesim.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--set", "model.num_hidden_layers=4"]


@pytest.fixture
def runner():
    return CliRunner()


ITERATION_SCENARIOS = [p for p in sorted((ROOT / "scenarios").glob("*.yaml"))
                       if "\noffload:" not in p.read_text()]  # offload examples: tests/test_offload.py


@pytest.mark.parametrize("scenario", ITERATION_SCENARIOS)
def test_shipped_scenarios_run(runner, scenario):
    piped = "pipeline_stages" in scenario.read_text()
    small = ["--set", "model.num_hidden_layers=8"] if piped else SMALL  # a MoE block for every stage
    res = runner.invoke(main, ["run", str(scenario), *small, "--set", "workload.tokens_per_gpu=64"])
    assert res.exit_code == 0, res.output
    if piped:  # a pipelined step: the schedule's figures per stage
        assert "bubble:" in res.output and "throughput:" in res.output and "stage  blocks" in res.output
        return
    assert "model throughput" in res.output or "MoE-layer throughput" in res.output
    assert "where the time goes" in res.output and "waiting" in res.output


def test_json_output_has_the_documented_fields(runner):
    res = runner.invoke(main, ["run", str(ROOT / "scenarios/mixtral-8x7b-a100.yaml"), *SMALL, "--json"])
    doc = json.loads(res.output)
    assert {"throughput_tokens_per_s", "iteration_time_s", "layers", "totals"} <= set(doc)
    assert {"time_s", "attention_proj_s", "attention_core_s", "router_s", "dispatch_s", "routed_experts_s",
            "combine_s", "waiting_s",
            "gpu_load_max_over_mean", "expert_load_max_over_mean"} <= set(doc["layers"][0])
    assert {"intra_node_bytes", "inter_node_bytes", "dropped_tokens", "stages", "waiting_s"} <= set(doc["totals"])
    assert sum(r["time_s"] for r in doc["layers"]) == pytest.approx(doc["iteration_time_s"])
    assert doc["throughput_scope"] == "whole_model" and doc["tokens_per_s_per_gpu"] > 0


def test_out_dir_and_trace(runner, tmp_path):
    res = runner.invoke(main, ["run", str(ROOT / "scenarios/mixtral-8x7b-a100.yaml"), *SMALL, "-o",
                               str(tmp_path / "out"), "--trace", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"result.json", "layers.csv", "gpus.csv",
                                                         "gpu_layer_tokens.csv"}
    trace = json.loads((tmp_path / "t.json").read_text())
    doc = json.loads((tmp_path / "out/result.json").read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] != "waiting"]
    stages_per_layer = [len(doc["stage_names"]) - 1] * 3 + [len(doc["stage_names"])]  # head on the last layer
    assert len(spans) == 8 * sum(stages_per_layer) and all(e["dur"] >= 0 for e in spans)
    assert {e["name"] for e in spans} == set(doc["stage_names"])
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert names == {f"GPU {g}" for g in range(8)}
    flows = [e for e in trace["traceEvents"] if e["ph"] in ("s", "f")]
    assert flows and len(flows) % 2 == 0 and {e["name"] for e in flows} <= {"dispatch", "combine"}
    assert len((tmp_path / "out/layers.csv").read_text().splitlines()) == 1 + 4


def test_list_and_check(runner):
    models = runner.invoke(main, ["list", "models"])
    assert models.exit_code == 0 and "deepseek-v3" in models.output and "qwen3-235b-a22b" in models.output
    gpus = runner.invoke(main, ["list", "gpus"])
    assert "datasheet" in gpus.output and "b200" in gpus.output
    check = runner.invoke(main, ["check", str(ROOT / "scenarios/deepseek-v3-prefill-h800.yaml")])
    assert check.exit_code == 0 and "n_routed_experts: 256" in check.output


@pytest.mark.parametrize("args,words", [
    (["--set", "cluster.nodes=3"], "placement.redundant_experts"),
    (["--set", "router.topk=2"], "router.topk: unknown key"),
    (["--set", "cluster.gpu=tpu"], "cluster.gpu: unknown GPU"),
])
def test_bad_input_is_one_line_and_exit_2(runner, args, words):
    res = runner.invoke(main, ["run", str(ROOT / "scenarios/deepseek-v3-prefill-h800.yaml"), *args])
    assert res.exit_code == 2
    assert words in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_missing_file_is_exit_2(runner, tmp_path):
    res = runner.invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_trace_of_two_micro_batches_names_a_thread_per_micro_batch(runner, tmp_path):
    res = runner.invoke(main, ["run", str(ROOT / "scenarios/mixtral-8x7b-a100.yaml"), *SMALL,
                               "--set", "workload.micro_batches=2", "--trace", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {f"GPU {g} · mb {m}" for g in range(8) for m in (0, 1)}
    mbs = {e["args"]["micro_batch"] for e in events if e["ph"] == "X"}
    assert mbs == {0, 1}
    # the second micro-batch waits for the GPU the first one holds: waiting slices exist
    assert any(e["cat"] == "waiting" for e in events if e["ph"] == "X")


def test_serve_concurrency_is_a_closed_loop_and_excludes_a_rate(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("seed: 3\nmodel: {base: mixtral-8x7b, num_hidden_layers: 2}\n"
                    "cluster: {gpu: h200, nodes: 1, gpus_per_node: 1}\n"
                    "serving: {requests: 12, input_tokens: {kind: random, value: 256, range_ratio: 0.8},\n"
                    "  output_tokens: {kind: constant, value: 4}, surface: {cache: false}}\n")
    r = CliRunner().invoke(main, ["serve", str(path), "--concurrency", "3", "-j", "1", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["workload_source"] == "closed loop: 3 requests in flight" and doc["requests"] == 12
    both = CliRunner().invoke(main, ["serve", str(path), "--concurrency", "3", "--rate", "2"])
    assert both.exit_code == 2 and "both given" in both.output and "\n" not in both.output.strip()
