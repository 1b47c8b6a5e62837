"""Sweeps: axes, caching and resuming, failures recorded, a pluggable executor, and clear errors."""

import json

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.exec import SerialExecutor
from moesim.studies.sweep import load_sweep, run_sweep
from moesim.util.errors import ScenarioError

BASE = """seed: 3
model: {base: deepseek-v3, num_hidden_layers: 5}
cluster: {gpu: h800, nodes: 1, gpus_per_node: 8}
router: {stats: {kind: zipf, alpha: 1.0}}
workload: {tokens_per_gpu: 256}
"""


def _files(tmp_path, sweep: str):
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "sweep.yaml").write_text(sweep)
    return tmp_path / "sweep.yaml"


SWEEP = """base: base.yaml
grid:
  cluster.nodes: [1, 2, 3]          # 3 nodes cannot hold 256 experts evenly: recorded, not fatal
  placement.kind: [contiguous, eplb]
zip:
  workload.tokens_per_gpu: [128, 256]
  router.top_k: [8, 4]
"""


class CountingExecutor(SerialExecutor):
    """Any object with run(fn, items) plugs in: here one that counts what it ran."""

    def __init__(self):
        self.ran = []

    def run(self, fn, items):
        for item, result in super().run(fn, items):
            self.ran.append(item[1])
            yield item, result


def test_points_are_the_grid_product_crossed_with_zipped_rows(tmp_path):
    spec = load_sweep(_files(tmp_path, SWEEP))
    pts = spec.points()
    assert len(pts) == 3 * 2 * 2
    assert {(p["workload.tokens_per_gpu"], p["router.top_k"]) for p in pts} == {(128, 8), (256, 4)}


def test_sweep_caches_resumes_and_records_failures(tmp_path):
    spec = load_sweep(_files(tmp_path, SWEEP))
    out = tmp_path / "out"
    ex = CountingExecutor()
    first = run_sweep(spec, out, ex)
    assert (first["points"], first["ran"], first["invalid"]) == (12, 8, 4)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    bad = [r for r in rows if r["cluster.nodes"] == 3]
    assert all("redundant_experts" in r["error"] for r in bad)
    good = [r for r in rows if "error" not in r]
    assert all(r["throughput_tokens_per_s"] > 0 for r in good)
    assert (out / "results.csv").read_text().count("\n") == 13
    again = run_sweep(spec, out, CountingExecutor())
    assert (again["ran"], again["cached"]) == (0, 8)
    # an interrupted sweep: one point's result is missing, only that point runs again
    victim = sorted((out / "points").glob("*.json"))[0]
    victim.unlink()
    ex3 = CountingExecutor()
    third = run_sweep(spec, out, ex3)
    assert third["ran"] == 1 and ex3.ran == [victim.stem]
    assert [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] == rows


@pytest.mark.parametrize("text, where", [
    ("base: base.yaml\nzip: {cluster.nodes: [1, 2], router.top_k: [8]}\n", "zip"),
    ("base: base.yaml\ngrids: {cluster.nodes: [1]}\n", "grids"),
    ("base: nope.yaml\n", "base"),
    ("base: base.yaml\ngrid: {cluster.nodes: 2}\n", "grid.cluster.nodes"),
])
def test_bad_sweep_files_are_one_clear_error(tmp_path, text, where):
    path = _files(tmp_path, text)
    with pytest.raises(ScenarioError, match=where.replace(".", r"\.")):
        load_sweep(path)
    r = CliRunner().invoke(main, ["sweep", str(path), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_sweep_command_runs_in_parallel_processes(tmp_path):
    path = _files(tmp_path, "base: base.yaml\ngrid: {placement.kind: [contiguous, eplb]}\n")
    r = CliRunner().invoke(main, ["sweep", str(path), "-o", str(tmp_path / "o"), "-j", "2", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["ran"] == 2 and summary["failed"] == 0
    assert summary["best"]["placement.kind"] in ("contiguous", "eplb")


def test_sweep_best_point_is_by_the_named_objective(tmp_path):
    path = _files(tmp_path, "base: base.yaml\ngrid: {cluster.nodes: [1, 2]}\n")
    r = CliRunner()
    got = {}
    for objective in ("throughput", "throughput-per-gpu", "cost"):
        res = r.invoke(main, ["sweep", str(path), "-o", str(tmp_path / "o"), "--objective", objective, "--gpu-price",
                              "2"])
        assert res.exit_code == 0, res.output
        assert f"(--objective {objective})" in res.stdout and "GPUs" in res.stdout
        got[objective] = res.stdout
    rows = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert {r["gpus"] for r in rows} == {8, 16} and all(r["gpu"] for r in rows)
    most = max(rows, key=lambda r: r["throughput_tokens_per_s"])["cluster.nodes"]
    per_gpu = max(rows, key=lambda r: r["tokens_per_s_per_gpu"])["cluster.nodes"]
    assert f'{{"cluster.nodes": {most}}}' in got["throughput"]
    assert f'{{"cluster.nodes": {per_gpu}}}' in got["throughput-per-gpu"] and "USD/Mtok" in got["cost"]


class KilledAfter(SerialExecutor):
    """Stops the sweep (as Ctrl-C would) after ``n`` points have finished."""

    def __init__(self, n):
        self.n = n

    def run(self, fn, items):
        for i, pair in enumerate(super().run(fn, items)):
            if i == self.n:
                raise KeyboardInterrupt
            yield pair


def test_a_sweep_killed_halfway_and_rerun_has_every_point_exactly_once(tmp_path):
    spec = load_sweep(_files(tmp_path, "base: base.yaml\ngrid: {cluster.nodes: [1, 2], placement.kind: [contiguous, "
                                       "eplb], workload.tokens_per_gpu: [64, 128]}\n"))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, KilledAfter(3))
    done = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(done) == 3  # what finished before the kill is on disk
    ex = CountingExecutor()
    summary = run_sweep(spec, out, ex)
    assert summary["cached"] == 3 and summary["ran"] == 5 and len(ex.ran) == 5
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    keys = [tuple(r[k] for k in ("cluster.nodes", "placement.kind", "workload.tokens_per_gpu")) for r in rows]
    assert len(keys) == 8 and len(set(keys)) == 8
