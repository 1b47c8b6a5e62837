"""Training end to end (``moesim validate training``): Megatron-Bridge's published pre-training rows as data, one
converter, the step composed from one micro-batch checked against the simulated accumulation."""

from __future__ import annotations

import json

from click.testing import CliRunner

from moesim.cli.main import main
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.studies.e2e import megatron, training


def test_rows_convert_as_the_table_describes_and_misprints_are_refused():
    rows = megatron.read_rows()
    assert len(rows) == 16
    why = {i: megatron.why_not(r) for i, r in enumerate(rows, start=1)}
    assert {i for i, w in why.items() if w} == {5, 15}  # gbs != mbs x ga x dp in the published table
    assert "8192 is not mbs x ga x dp = 2 x 32 x 64" in why[5]
    # row 7: DeepSeek-V3 on 256 GB200, FP8, PP8, EP32, MBS 1 x 4096, GA 128: one EP group per stage
    sc = megatron.scenario(rows[6], 7)
    assert sc["cluster"] == {"gpu": "gb200", "nodes": 8, "gpus_per_node": 32}
    assert sc["model"]["weight_dtype"] == "fp8" and sc["router"] == {"stats": {"kind": "uniform"}}
    assert sc["workload"] == {"mode": "training", "tokens_per_gpu": 4096, "context_tokens": 4096,
                              "accumulation_steps": 128, "pipeline_stages": 8}
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
