"""Training end to end (``moesim validate training``): Megatron-Bridge's published pre-training rows as data, one
converter, the step composed from one micro-batch checked against the simulated accumulation."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import param_counts
from moesim.studies.e2e import megatron, training


def test_rows_convert_as_the_table_describes_and_misprints_are_refused():
    rows = megatron.read_rows()
    assert len(rows) == 16
    why = {i: megatron.why_not(r) for i, r in enumerate(rows, start=1)}
    assert {i for i, w in why.items() if w} == {5, 15}  # gbs != mbs x ga x dp in the published table
    assert "8192 is not mbs x ga x dp = 2 x 32 x 64" in why[5]
    # row 7: DeepSeek-V3 on 256 GB200, FP8, PP8, VP4, EP32, MBS 1 x 4096, GA 128: one EP group per stage
    sc = megatron.scenario(rows[6], 7)
    assert sc["cluster"] == {"gpu": "gb200", "nodes": 8, "gpus_per_node": 32}
    assert sc["model"]["weight_dtype"] == "fp8" and sc["router"] == {"stats": {"kind": "uniform"}}
    assert sc["workload"] == {"mode": "training", "tokens_per_gpu": 4096, "context_tokens": 4096,
                              "accumulation_steps": 128, "pipeline_stages": 8, "pipeline_virtual_stages": 4,
                              "data_parallel": 1}  # dp 256 / 8 = 32 = ep: one replica of the group
    assert megatron.scenario(rows[0], 1)["workload"]["data_parallel"] == 4  # GB300: dp 256 / 2 = 128 over ep 32
    assert sc["runtime"] == {"framework": "megatron"}
    for i, r in enumerate(rows, start=1):
        if not why[i]:
            scenario_from_dict(megatron.scenario(r, i))  # every converted row is a valid scenario


def test_one_micro_batch_composes_the_accumulated_step():
    """step = ga x (iteration - sync) + sync: the composition against the DES running all three micro-batches."""
    sc = {"name": "t", "seed": 1, "model": {"base": "qwen3-30b-a3b", "num_hidden_layers": 2},
          "cluster": {"gpu": "b200", "nodes": 1, "gpus_per_node": 8}, "router": {"stats": {"kind": "uniform"}},
          "workload": {"mode": "training", "tokens_per_gpu": 1024, "context_tokens": 1024, "accumulation_steps": 3}}
    doc = run_scenario(scenario_from_dict(sc)).doc
    direct = 1024 * 3 / doc["iteration_time_s"]
    assert abs(training.predict(sc) / direct - 1) < 0.02


def test_validate_training_cli_one_row_by_hand(monkeypatch):
    monkeypatch.setattr(training, "predict", lambda sc: 2.0 * sc["workload"]["tokens_per_gpu"])  # 8192 tokens/s
    r = CliRunner().invoke(main, ["validate", "training", "--only", "13,15", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    (row,) = doc["rows"]
    assert row["row"] == 13 and row["measured"] == 9299 and row["predicted"] == 8192
    assert abs(row["signed_error"] - (8192 / 9299 - 1)) < 1e-12
    assert doc["overall"] == {"rows": 1, "mape": abs(8192 / 9299 - 1), "bias": 8192 / 9299 - 1}
    assert [x["row"] for x in doc["skipped"]] == [15]
    text = CliRunner().invoke(main, ["validate", "training", "--only", "13"]).stdout
    assert "Qwen3_30B_a3B" in text and "-11.9%" in text
    bad = CliRunner().invoke(main, ["validate", "training", "--only", "nothing"])
    assert bad.exit_code == 2 and "matches no row" in bad.output


def _tiny(**workload):
    return {"name": "t", "seed": 1, "model": {"base": "qwen3-30b-a3b", "num_hidden_layers": 4},
            "cluster": {"gpu": "b200", "nodes": 1, "gpus_per_node": 8}, "router": {"stats": {"kind": "uniform"}},
            "workload": {"mode": "training", "tokens_per_gpu": 1024, "context_tokens": 1024, **workload}}


def test_framework_sync_waits_per_moe_layer_and_pass_by_hand():
    """4 MoE layers x (forward + backward) x 2 micro-batches x 1 ms = 16 ms more, in its own stage."""
    sc = _tiny(accumulation_steps=2)
    plain = run_scenario(scenario_from_dict(sc)).doc
    synced = run_scenario(scenario_from_dict({**sc, "runtime": {"layer_sync_s": 0.001}})).doc
    assert abs(synced["iteration_time_s"] - plain["iteration_time_s"] - 0.016) < 1e-9
    assert abs(synced["totals"]["stages"]["framework_sync"] / 0.016 - 1) < 0.01  # on the critical path
    assert "framework_sync" not in plain["totals"]["stages"]


def test_data_parallel_replicas_reduce_each_gpus_gradients_over_its_nic_by_hand():
    """4 replicas: every GPU's gradients (its dense copy and its 16 experts x 4 layers, BF16) ride a ring
    of 2 x 3/4 of them over its NIC (B200: 48 GB/s, one NIC a GPU), with 2 x 3 start-ups."""
    plain = run_scenario(scenario_from_dict(_tiny())).doc
    dp = run_scenario(scenario_from_dict(_tiny(data_parallel=4))).doc
    s = scenario_from_dict(_tiny())
    m = s.model
    p = param_counts(m)
    dense = (p.attention + p.dense_ffn + p.shared_experts + p.router + p.embeddings) * 2
    experts = 4 * (128 // 8) * 3 * m.hidden_size * m.moe_intermediate_size * 2
    g = s.cluster.gpu
    assert g.nic_bandwidth == 48e9  # the catalogue's B200 NIC (one a GPU)
    want = 2 * 3 / 4 * (dense + experts) / g.nic_bandwidth + 6 * g.collective_latency
    assert dp["totals"]["stages"]["data_parallel_sync"] == pytest.approx(want, rel=1e-9)
    assert dp["iteration_time_s"] - plain["iteration_time_s"] == pytest.approx(want, rel=1e-9)
    assert dp["gradient_sync_s"] - plain["gradient_sync_s"] == pytest.approx(want, rel=1e-9)
    assert "data_parallel_sync" not in plain["totals"]["stages"]


def test_the_framework_names_its_fitted_term_and_an_explicit_value_wins():
    from moesim.config.catalog import framework_terms
    fitted = framework_terms("megatron")["layer_sync_s"]
    assert 0 < fitted < 0.05
    assert scenario_from_dict({**_tiny(), "runtime": {"framework": "megatron"}}).runtime.layer_sync_s == fitted
    explicit = {"framework": "megatron", "layer_sync_s": 0.002}
    assert scenario_from_dict({**_tiny(), "runtime": explicit}).runtime.layer_sync_s == 0.002
    assert scenario_from_dict(_tiny()).runtime.layer_sync_s is None  # no framework: no wait


def test_the_surrogate_counts_the_pipelines_exposures_as_the_des_does():
    """Two stages, 3 micro-batches: (3 + 2 - 1) x (4 / 2) layers x 2 passes x h on the critical path."""
    from moesim.pipeline import run_pipeline
    from moesim.studies.e2e.training_fit import exposures
    sc = {**_tiny(accumulation_steps=3, pipeline_stages=2), "cluster": {"gpu": "b200", "nodes": 2, "gpus_per_node": 8}}
    assert exposures(sc) == 16.0
    times = [run_pipeline(scenario_from_dict({**sc, "runtime": {"layer_sync_s": h}})).doc["time_s"] for h in (0, 1e-3)]
    assert abs((times[1] - times[0]) / 0.016 - 1) < 0.05


def test_refit_is_deterministic_and_the_shipped_term_is_its_output():
    """CI re-fits from the data files (no simulation) and gets the shipped frameworks file back."""
    from moesim.config.catalog import FRAMEWORKS
    from moesim.studies.e2e.training import BASE
    from moesim.studies.e2e.training_fit import refit
    base = json.loads(BASE.read_text(encoding="utf-8"))
    doc = refit(base)
    assert doc == refit(base) == json.loads(FRAMEWORKS.read_text(encoding="utf-8"))
    assert doc["label"] == "fitted" and set(doc["fit_rows"]).isdisjoint(doc["test_rows"])
    assert doc["surrogate_errors"]["test"]["mape"] < doc["surrogate_errors"]["base"]["mape"]
    assert set(doc["leave_one_system_out"]) >= {"DGX-B200", "DGX-GB200", "DGX-GB300", "DGX-H100"}
