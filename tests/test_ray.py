"""Sweeps on Ray: a local Ray instance started by the test runs the points as self-contained tasks (the
resolved scenario plus the bytes of the files it reads); results, cache and resume match the local run."""

import json
from pathlib import Path

import numpy as np
import pytest

from moesim.exec import SerialExecutor
from moesim.iteration.scenario import load_scenario
from moesim.studies.sweep import load_sweep, run_sweep
from moesim.studies.sweep.bundle import materialize, referenced_files

BASE = """seed: 5
model: {base: mixtral-8x7b, num_hidden_layers: 2}
cluster: {gpu: h100, nodes: 1, gpus_per_node: 4}
router: {stats: {kind: histogram, path: hist.npz}}
workload: {tokens_per_gpu: 64, scope: moe_layers}
"""
SWEEP = "base: base.yaml\ngrid: {workload.tokens_per_gpu: [32, 64], placement.kind: [contiguous, eplb]}\n"


def _files(tmp_path):
    counts = np.random.default_rng(0).integers(1, 50, size=(2, 8)).astype(float)
    np.savez(tmp_path / "hist.npz", counts=counts)
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    return tmp_path / "sweep.yaml"


def test_bundle_carries_the_files_a_scenario_reads(tmp_path):
    _files(tmp_path)
    s = load_scenario(tmp_path / "base.yaml")
    files = referenced_files(s)
    assert [p.endswith("hist.npz") for p in files] == [True]
    (tmp_path / "hist.npz").unlink()  # a worker that does not have the file
    s2 = materialize(s, files)
    assert s2.router.stats.path != s.router.stats.path
    assert open(s2.router.stats.path, "rb").read() == next(iter(files.values()))
    assert s2.cluster.gpu_provenance == s.cluster.gpu_provenance
    assert materialize(s2, {}) is s2


@pytest.mark.slow
def test_sweep_on_ray_matches_the_local_run_and_resumes(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'moesim[ray]')")
    from moesim.exec.ray_executor import RayExecutor

    spec = load_sweep(_files(tmp_path))
    local = run_sweep(spec, tmp_path / "local", SerialExecutor())
    ray_out = tmp_path / "ray"
    summary = run_sweep(spec, ray_out, RayExecutor(jobs=2))
    assert (summary["ran"], summary["failed"]) == (4, 0)

    def rows(folder):
        return sorted((json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()),
                      key=lambda r: (r["workload.tokens_per_gpu"], r["placement.kind"]))
    assert rows(ray_out) == rows(tmp_path / "local")
    assert local["best"]["throughput_tokens_per_s"] == summary["best"]["throughput_tokens_per_s"]
    victim = sorted((ray_out / "points").glob("*.json"))[0]
    victim.unlink()
    again = run_sweep(spec, ray_out, RayExecutor(jobs=2))
    assert (again["ran"], again["cached"]) == (1, 3)


@pytest.mark.slow
def test_sigterm_on_a_ray_sweep_stops_it_as_ctrl_c_without_a_stack_dump(tmp_path):
    """ray.init installs a C++ SIGTERM handler that printed '*** SIGTERM received ***' and a stack, and died
    by the signal; moesim re-installs its own: exit 143, finished points kept, Ray stopped."""
    import signal
    import subprocess
    import sys
    import time
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'moesim[ray]')")
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "moesim", "sweep", str(root / "sweeps" / "v3-nodes-placement.yaml"),
           "--executor", "ray", "-j", "2", "-o", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=root)
    seen = ""
    deadline = time.monotonic() + 120
    while "[sweep] " not in seen and time.monotonic() < deadline:  # Ray is up and points are running
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGTERM)
    err = seen + proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, err[-800:]
    assert "SIGTERM received" not in err and "interrupted: every finished point is in" in err
