"""End-to-end validation (``moesim validate e2e``): rows as data, one converter per source, errors by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.studies.e2e import inferencex, run
from moesim.studies.e2e.run import INFERENCEX, compare, rows_of, select, stats


def test_the_shipped_rows_are_data_with_groups_and_engines():
    rows = rows_of(INFERENCEX)
    fit = run.fitted_rows()  # the rows the shipped engine terms were fitted on
    assert len(rows) == 50 and {r.index for r in rows if r.split == "fit"} == fit and 0 < len(fit) < 50
    assert all(r.split == "test" for r in rows_of(INFERENCEX, frozenset()))
    groups = {r.group for r in rows}
    assert "h200/sglang/agg/no-mtp" in groups and "h200/trtllm/disagg/mtp" in groups
    engines = {r.scenario["serving"].get("engine") for r in rows}
    assert engines == {"sglang", "trtllm"}
    first = inferencex.read_rows(INFERENCEX)[0]
    assert inferencex.measured(first) == {"ttft_s": 0.0847318, "tpot_s": 0.00972993, "tokens_per_s_per_gpu": 98.8286}


def test_errors_and_groups_by_hand(monkeypatch):
    """Predictions 10% high on every metric of two rows and 20% low on a third: MAPE and bias by hand."""
    rows = select(rows_of(INFERENCEX, frozenset()), "1,2,40")  # all test rows
    scale = {1: 1.1, 2: 1.1, 40: 0.8}
    monkeypatch.setattr(run, "predict", lambda row, ex, cache=True: {m: v * scale[row.index]
                                                                    for m, v in row.measured.items()})
    doc = compare(rows, executor=None)
    by_row = {r["row"]: r for r in doc["rows"]}
    assert by_row[1]["signed_error"]["tpot_s"] == pytest.approx(0.1)
    assert by_row[40]["signed_error"]["ttft_s"] == pytest.approx(-0.2)
    overall = doc["overall"]["test"]
    assert overall["rows"] == 3 and overall["ttft_s"]["mape"] == pytest.approx(0.4 / 3)
    assert overall["ttft_s"]["bias"] == pytest.approx(0.0)
    assert doc["groups"][rows[0].group]["tpot_s"]["bias"] == pytest.approx(0.1)


def test_stats_of_nothing_are_empty():
    assert stats([])["rows"] == 0 and stats([])["ttft_s"]["mape"] is None


def test_a_row_that_cannot_run_is_reported(monkeypatch):
    def boom(row, ex, cache=True):
        raise ValueError("no")
    monkeypatch.setattr(run, "predict", boom)
    doc = compare(select(rows_of(INFERENCEX), "3"), executor=None)
    assert doc["failed"] == 1 and doc["rows"][0]["error"] == "no"


@pytest.mark.slow
def test_moesim_validate_e2e_runs_a_row_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    out = CliRunner().invoke(main, ["validate", "e2e", "--only", "1", "--json", "-j", "1", "-o", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    row = doc["rows"][0]
    assert row["row"] == 1 and set(row["predicted"]) == set(row["measured"])
    assert (tmp_path / "r" / "e2e.png").is_file() and (tmp_path / "r" / "README.md").is_file()
    assert (tmp_path / "r" / "e2e_curves.png").is_file() and row["concurrency"] == 4


def test_an_unmatched_selection_is_a_usage_error():
    out = CliRunner().invoke(main, ["validate", "e2e", "--only", "no-such-group"])
    assert out.exit_code == 2 and "matches no row" in out.output


def test_engine_flags_as_inferencex_launched_them():
    rows = inferencex.read_rows(INFERENCEX)
    # SGLang, dsr1_fp8_h200_mtp.sh: EAGLE 2 steps, 32k chunks over TP8, 512 running at 1k/1k, no radix cache
    f = inferencex.engine_flags(rows[2])
    assert f["drafts"] == 2 and f["scheduler"] == {"token_budget": 4096, "max_running": 512, "prefix_cache": False}
    # TensorRT-LLM MTP without DP attention (row 18, conc 16): 3 next-n layers, max_num_tokens
    # ceil64(4 x 16 + 1024 + 64) = 1152 per TP8 rank = 144 per GPU
    f = inferencex.engine_flags(rows[17])
    assert f["drafts"] == 3 and f["scheduler"]["token_budget"] == 144
    # with DP attention (row 20): 1 layer, the attention-DP balance's 60 iterations
    f = inferencex.engine_flags(rows[19])
    assert f["drafts"] == 1 and f["scheduler"]["dp_balance_timeout_iters"] == 60
    # Dynamo-TRT row 31 (8k/1k, 1 prefill + 7 decode workers, conc 9) ran c1_ctx1_gen7_tep8_batch1: one
    # sequence per decode worker, so 2 of its 9 requests always wait
    f = inferencex.engine_flags(rows[30])
    assert f["recipe"].startswith("c1_ctx1_gen7_tep8_batch1") and f["decode"]["max_running"] == 1
    # Dynamo-SGLang row 45 (conc 512) ran bs128-1p1d-dep-mtp: 192 running on its one decode worker
    f = inferencex.engine_flags(rows[44])
    assert f["recipe"] == "bs128-1p1d-dep-mtp.yaml" and f["decode"]["max_running"] == 192 and f["drafts"] == 2
    sc = inferencex.scenario(rows[44], 45)
    assert sc["serving"]["deployment"]["decode"]["scheduler"]["max_running"] == 192
    assert sc["serving"]["mtp"] == {"draft_tokens": 2}
