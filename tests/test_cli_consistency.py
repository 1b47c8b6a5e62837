"""One convention across commands: results on stdout (a table, or JSON with --json), progress and "wrote"
lines on stderr; registries as checked choices; non-zero exit when a sweep produced nothing; and the
Python API's entry points (run, sweep, plan, report) returning data-frame-ready records."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moesim import api
from moesim.cli.main import PLACEMENT_LIST, main
from moesim.placement import PLACEMENTS

ROOT = Path(__file__).resolve().parents[1]
SCEN = """seed: 2
model: {base: deepseek-v3, num_hidden_layers: 5}
cluster: {gpu: h800, nodes: 1, gpus_per_node: 8}
router: {stats: {kind: zipf, alpha: 1.0}}
workload: {tokens_per_gpu: 64}
"""


@pytest.fixture
def scen(tmp_path):
    (tmp_path / "s.yaml").write_text(SCEN)
    return tmp_path / "s.yaml"


@pytest.mark.parametrize("what", ["models", "gpus", "hosts", "placements"])
def test_list_prints_json_on_request(what):
    r = CliRunner().invoke(main, ["list", what, "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows and all(("id" in x) or ("name" in x) for x in rows)


def test_check_prints_json_on_request(scen):
    r = CliRunner().invoke(main, ["check", str(scen), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["model"]["n_routed_experts"] == 256 and "size estimate" in doc["estimate"]


def test_written_files_are_reported_on_stderr_only(scen, tmp_path):
    r = CliRunner()
    runs = [["run", str(scen), "-o", str(tmp_path / "run"), "--json"],
            ["compare", str(scen), "--placements", "contiguous,eplb", "--json", "-o", str(tmp_path / "cmp")],
            ["report", str(tmp_path / "run"), "-o", str(tmp_path / "rep")],
            ["export-placement", str(scen), "-o", str(tmp_path / "p.json")]]
    for args in runs:
        res = r.invoke(main, args)
        assert res.exit_code == 0, res.output
        assert "wrote" in res.stderr and "wrote" not in res.stdout, args
        if "--json" in args:
            json.loads(res.stdout)  # stdout is exactly the JSON


def test_placements_are_a_checked_choice_listed_in_help():
    assert sorted(PLACEMENT_LIST.choices) == sorted(PLACEMENTS)
    help_text = CliRunner().invoke(main, ["compare", "--help"]).output
    assert all(name in help_text for name in PLACEMENTS)
    bad = CliRunner().invoke(main, ["compare", "x.yaml", "--placements", "eplb,nope"])
    assert bad.exit_code == 2 and "nope not one of" in bad.output
    done = PLACEMENT_LIST.shell_complete(None, None, "contiguous,ep")
    assert [c.value for c in done] == ["contiguous,eplb", "contiguous,eplb_hierarchical", "contiguous,eplb_global"]


def test_a_sweep_where_every_point_fails_exits_2_and_keeps_the_errors(scen, tmp_path):
    (tmp_path / "sw.yaml").write_text("base: s.yaml\ngrid: {placement.kind: [greedy], "
                                      "placement.redundant_experts: [8, 16]}\n")
    r = CliRunner().invoke(main, ["sweep", str(tmp_path / "sw.yaml"), "-o", str(tmp_path / "sw"), "-j", "1"])
    assert r.exit_code == 2 and "every point of the sweep failed" in r.stderr
    rows = [json.loads(x) for x in (tmp_path / "sw" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("error" in x for x in rows)


def test_the_python_api_returns_records(scen, tmp_path):
    res = api.run(scen)
    layers = res.to_records()
    assert len(layers) == 2 and all(not isinstance(v, list | dict) for v in layers[0].values())
    assert len(res.to_records("gpus")) == 8
    (tmp_path / "sw.yaml").write_text("base: s.yaml\ngrid: {placement.kind: [contiguous, eplb]}\n")
    rows = api.sweep(tmp_path / "sw.yaml", tmp_path / "sw")
    assert [r["placement.kind"] for r in rows] == ["contiguous", "eplb"] and all(r["throughput_tokens_per_s"] > 0
                                                                                 for r in rows)
    written = api.report(tmp_path / "sw", tmp_path / "rep")
    assert written[0].name == "index.html" and written[0].is_file()
    pd = pytest.importorskip("pandas", reason="pandas is not installed (the test extra has it)")
    assert pd.DataFrame(rows).shape[0] == 2
