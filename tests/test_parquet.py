"""`--format parquet`: the tables of a -o folder also as Parquet (the CSVs stay for `moesim report`), with the
types pyarrow infers; refused before any work without pyarrow or without -o."""

import csv
import json
import sys

import pytest
from click.testing import CliRunner

from moesim.cli.main import main

SCEN = """seed: 3
model: {base: deepseek-v3, num_hidden_layers: 5}
cluster: {gpu: h800, nodes: 1, gpus_per_node: 8}
router: {stats: {kind: zipf, alpha: 1.0}}
workload: {tokens_per_gpu: 128}
"""


@pytest.fixture()
def scen(tmp_path):
    (tmp_path / "s.yaml").write_text(SCEN)
    return tmp_path / "s.yaml"


def test_run_tables_as_parquet_match_the_csvs(tmp_path, scen):
    pq = pytest.importorskip("pyarrow.parquet", reason="pip install pyarrow (the test extra has it)")
    res = CliRunner().invoke(main, ["run", str(scen), "-o", str(tmp_path / "o"), "--format", "parquet"])
    assert res.exit_code == 0, res.output
    for name in ("layers", "gpus", "gpu_layer_tokens"):
        table = pq.read_table(tmp_path / "o" / f"{name}.parquet").to_pylist()
        with open(tmp_path / "o" / f"{name}.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        body = rows if name == "gpu_layer_tokens" else rows[1:]
        assert len(table) == len(body) and len(table[0]) == len(body[0])
    layers = pq.read_table(tmp_path / "o" / "layers.parquet")
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert layers.column("time_s").to_pylist() == pytest.approx([r["time_s"] for r in doc["layers"]])
    assert str(layers.schema.field("layer").type) == "int64"  # typed, not strings
    assert pq.read_table(tmp_path / "o" / "gpu_layer_tokens.parquet").column_names[:2] == ["gpu0", "gpu1"]


def test_sweep_results_as_parquet(tmp_path, scen):
    pq = pytest.importorskip("pyarrow.parquet", reason="pip install pyarrow (the test extra has it)")
    (tmp_path / "sw.yaml").write_text("base: s.yaml\ngrid: {placement.kind: [contiguous, eplb]}\n")
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "sw.yaml"), "-o", str(tmp_path / "o"), "-j", "1",
                                    "--format", "parquet"])
    assert res.exit_code == 0, res.output
    got = pq.read_table(tmp_path / "o" / "results.parquet").to_pylist()
    assert sorted(r["placement.kind"] for r in got) == ["contiguous", "eplb"]


def test_parquet_without_pyarrow_or_without_out_is_refused_first(tmp_path, scen, monkeypatch):
    res = CliRunner().invoke(main, ["run", str(scen), "--format", "parquet"])
    assert res.exit_code == 2 and "give -o DIR" in res.output
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    res = CliRunner().invoke(main, ["run", str(scen), "-o", str(tmp_path / "o"), "--format", "parquet"])
    assert res.exit_code == 2 and "pip install 'moesim[parquet]'" in res.output
    assert not (tmp_path / "o").exists()  # refused before the run
