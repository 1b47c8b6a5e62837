"""Reproducers of the hardening families (issue 17): every bad input is one clear line and exit 2, an
unexpected exception is one "internal error" line and exit 3, the engine stops on numbers it cannot
simulate instead of hanging, sweeps hold their folder and distrust bad cached points, workers die with
their parent, and every run checks its invariants."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.util.errors import EngineError

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_cases import BASE, BOMB, PLAN, RECURSIVE

ROOT = Path(__file__).resolve().parents[1]


def run(args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def scenario(tmp_path, text: str | bytes, name="s.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def with_field(path: str, raw: str) -> str:
    """BASE as YAML with one field's value written as raw YAML text."""
    d = yaml.safe_load(yaml.safe_dump(BASE))
    node = d
    *head, last = path.split(".")
    for k in head:
        node = node.setdefault(k, {})
    node[last] = "__RAW__"
    return yaml.safe_dump(d, sort_keys=False).replace("'__RAW__'", raw).replace("__RAW__", raw)


def bad(res, *words):
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    usage = lines[-1].startswith("Error: ")  # click's own usage errors: the usage line, then one "Error:" line
    assert "Traceback" not in res.output and (len(lines) == 1 or usage), res.output
    for w in words:
        assert w in res.output, res.output


@pytest.mark.parametrize("raw, words", [
    ("!!set {a, b}", ["!!set is not plain data"]),
    ("!!binary aGVsbG8=", ["!!binary is not plain data"]),
    ("!!python/object:os.system ls", ["is not plain data"]),
])
def test_yaml_that_is_not_plain_data(tmp_path, raw, words):
    bad(run(["run", scenario(tmp_path, with_field("name", raw))]), *words)


def test_dates_stay_strings_and_aliases_are_bounded(tmp_path):
    ok = run(["check", scenario(tmp_path, with_field("name", "2026-01-01"))])
    assert ok.exit_code == 0 and "name: '2026-01-01'" in ok.output
    bad(run(["run", scenario(tmp_path, BOMB)]), "expands to more than")
    bad(run(["run", scenario(tmp_path, RECURSIVE)]), "refers to itself")
    bad(run(["run", scenario(tmp_path, "a: " + "[" * 3000 + "]" * 3000)]), "nested too deeply")


def test_files_that_are_not_what_they_claim(tmp_path):
    bad(run(["run", scenario(tmp_path, b"seed: 1\nmodel: \xff\xfe\n")]), "is not UTF-8 text")
    (tmp_path / "dir.yaml").mkdir()
    bad(run(["run", tmp_path / "dir.yaml"]), "is a directory")
    bad(run(["run", "/dev/zero"]), "not a regular file")
    for name, data in (("t.npz", b"PK\x03\x04broken"), ("t.json", b"{\"counts\": [1, "), ("t.npy", b"\x93NUMPY")):
        (tmp_path / name).write_bytes(data)
        s = with_field("router.stats", f"{{kind: histogram, path: {name}}}")
        bad(run(["run", scenario(tmp_path, s)]))
        bad(run(["stats", tmp_path / name, "--gpus", "4"]))
    ids = np.zeros((2, 8, 2), dtype=np.int64)
    ids[0, 0] = [0, 99]  # an expert the model does not have
    np.savez(tmp_path / "trace.npz", topk_ids=ids)
    bad(run(["run", scenario(tmp_path, with_field("router.stats", "{kind: trace, path: trace.npz}"))]),
        "expert ids must lie in [0, 8)")


@pytest.mark.parametrize("field, raw, words", [
    ("cluster.intra_node.bandwidth", "1e400GB/s", ["not a finite bandwidth"]),
    ("cluster.intra_node.latency", "9e99min", ["beyond any real time"]),
    ("cluster.inter_node.nic_bandwidth", "1e30GB/s", ["beyond any real bandwidth"]),
    ("router.bias", "[.nan, 0, 0, 0, 0, 0, 0, 0]", ["router.bias"]),
    ("router.stats.alpha", ".inf", ["router.stats.alpha"]),
    ("model.moe_layer_freq", "1000000", ["model.moe_layer_freq"]),
    ("model.moe_layer_freq", "50", ["leaves no MoE layer"]),
    ("model.num_hidden_layers", "1000000000", ["less than or equal to 10000"]),
    ("workload.tokens_per_gpu", "-3", ["workload.tokens_per_gpu"]),
])
def test_numbers_that_cannot_be_simulated_are_refused_naming_the_field(tmp_path, field, raw, words):
    bad(run(["run", scenario(tmp_path, with_field(field, raw))]), *words)


def test_fields_the_loader_derives_are_not_taken_from_the_file(tmp_path):
    res = run(["run", scenario(tmp_path, with_field("cluster.gpu_profile", "/nonexistent.json")), "--json"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("price, words", [("-1", "greater than 0"), ("0", "greater than 0"), (".nan", "finite"),
                                          ("true", "not true/false"), ("1e9", "less than or equal")])
def test_plan_prices_are_positive_numbers(tmp_path, price, words):
    d = yaml.safe_dump({**PLAN, "gpus": {"h100": {"price_per_hour": "__P__"}}}).replace("__P__", price)
    bad(run(["plan", scenario(tmp_path, d, "p.yaml")]), "price_per_hour", words)


def test_plan_and_sweep_mistakes_stop_before_anything_runs(tmp_path):
    bad(run(["plan", scenario(tmp_path, yaml.safe_dump({**PLAN, "vary": [1, 2]}), "p.yaml")]), "vary")
    unknown_gpu = {**PLAN, "gpus": {"h1000": {"price_per_hour": 2.0}}}
    t0 = time.monotonic()
    bad(run(["plan", scenario(tmp_path, yaml.safe_dump(unknown_gpu), "p.yaml")]), "unknown GPU 'h1000'")
    typo = {**PLAN, "scenario": {"workload": {"context_tokenz": 100}}}
    bad(run(["plan", scenario(tmp_path, yaml.safe_dump(typo), "p.yaml")]), "context_tokenz", "unknown key")
    assert time.monotonic() - t0 < 20  # refused up front, not after a search
    scenario(tmp_path, yaml.safe_dump(BASE), "base.yaml")
    sweep = scenario(tmp_path, "base: base.yaml\ngrid: {cluster.nodez: [1, 2]}\n", "sw.yaml")
    bad(run(["sweep", sweep, "-o", tmp_path / "out", "-j", "1"]), "cluster.nodez", "unknown key")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_stats_step_and_a_corrupt_result_are_clear_errors(tmp_path):
    np.save(tmp_path / "h.npy", np.ones((2, 3, 8)))
    bad(run(["stats", tmp_path / "h.npy", "--gpus", "4", "--step", "9"]), "--step")
    bad(run(["stats", tmp_path / "h.npy", "--gpus", "4", "--step", "foo"]), "--step")
    (tmp_path / "r").mkdir()
    for junk in (b"{", b"[]", b"{\"layers\": 3}", b"\xff"):
        (tmp_path / "r" / "result.json").write_bytes(junk)
        bad(run(["report", tmp_path / "r", "-o", tmp_path / "rep"]))


def test_a_huge_cluster_is_refused_before_work(tmp_path):
    t0 = time.monotonic()
    huge = with_field("cluster.nodes", "25000000").replace("redundant_experts: 0", "redundant_experts: 99999992")
    bad(run(["run", scenario(tmp_path, huge)]), "--set sim.size_guard=false")
    assert time.monotonic() - t0 < 20


def test_an_unexpected_exception_is_one_internal_error_line(tmp_path, monkeypatch):
    from moesim import api
    monkeypatch.setattr(api, "run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    res = CliRunner().invoke(main, ["run", str(scenario(tmp_path, yaml.safe_dump(BASE)))])
    assert res.exit_code == 3 and "internal error: RuntimeError: boom" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_max_min_rates_converge_on_extreme_capacities():
    from moesim.engine.fluid import maxmin_rates
    paths = np.array([[0, 1], [1, -1], [0, -1]])
    for cap in (np.array([1e30, 1e-30]), np.array([1e300, 1e300]), np.array([3.0, 3.0 + 1e-15])):
        rates = maxmin_rates(paths, cap)
        assert np.isfinite(rates).all() and (rates > 0).all()


def test_the_engine_stops_when_simulated_time_cannot_advance():
    import simpy

    from moesim.engine.fluid import FluidNetwork
    env = simpy.Environment(initial_time=1e20)
    net = FluidNetwork(env, np.array([1e16]), np.array([0.0]))
    net.add(np.array([[0, -1, -1, -1]]), np.array([1.0]), np.array([0]), lambda tok, t: None)
    with pytest.raises(EngineError, match="stopped advancing"):
        env.run()


def test_a_sweep_folder_is_held_and_bad_cached_points_rerun(tmp_path):
    scenario(tmp_path, yaml.safe_dump(BASE), "base.yaml")
    sweep = scenario(tmp_path, "base: base.yaml\ngrid: {placement.kind: [contiguous, eplb]}\n", "sw.yaml")
    out = tmp_path / "out"
    assert run(["sweep", sweep, "-o", out, "-j", "1"]).exit_code == 0
    points = sorted((out / "points").glob("*.json"))
    points[0].write_text("{broken")  # unreadable
    doc = json.loads(points[1].read_text())
    doc["result"]["iteration_time_s"] = -1.0  # plausible-looking but impossible
    points[1].write_text(json.dumps(doc))
    again = run(["sweep", sweep, "-o", out, "-j", "1", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["ran"] == 2
    other = scenario(tmp_path, "base: base.yaml\ngrid: {cluster.nodes: [1, 2]}\n", "other.yaml")
    bad(run(["sweep", other, "-o", out, "-j", "1"]), "holds the results of another sweep")
    import fcntl
    with (out / ".lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        bad(run(["sweep", sweep, "-o", out, "-j", "1"]), "another sweep is writing this folder")


def test_pool_workers_die_with_their_parent(tmp_path):
    code = f"""
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
sys.path.insert(0, {str(ROOT)!r})
from moesim.exec.local import die_with_parent
def work(path):
    open(path, "w").write(str(os.getpid())); time.sleep(120)
pool = ProcessPoolExecutor(2, initializer=die_with_parent, initargs=(os.getpid(),))
pool.submit(work, {str(tmp_path / "w1")!r}); pool.submit(work, {str(tmp_path / "w2")!r})
time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"w{i}").exists() for i in (1, 2)) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int((tmp_path / f"w{i}").read_text() or 0) for i in (1, 2)]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _alive(p)]
            time.sleep(0.1)
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_a_run_that_breaks_an_invariant_is_caught():
    from moesim import api
    from moesim.iteration.invariants import InvariantError, check_run
    from moesim.iteration.scenario import scenario_from_dict
    r = api.run_scenario(scenario_from_dict(BASE))
    st = [r.built.stats]
    check_run(r.summary, st, 8 * 32, 2, "token_choice")
    with pytest.raises(InvariantError, match="computed \\+ dropped"):
        check_run(r.summary, st, 8 * 32 + 1, 2, "token_choice")


@pytest.mark.parametrize("env", [{"PYTHONHASHSEED": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
                                 {"PYTHONHASHSEED": "999", "OMP_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}])
def test_same_seed_same_bytes_across_processes_hash_seeds_and_threads(tmp_path, env):
    path = scenario(tmp_path, yaml.safe_dump(BASE))
    here = CliRunner().invoke(main, ["run", str(path), "--json"]).stdout
    there = subprocess.run([sys.executable, "-m", "moesim", "run", str(path), "--json"], capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=300, check=True).stdout
    assert here == there


def test_forcing_the_exact_network_on_many_gpus_warns(tmp_path):
    from moesim.iteration.scenario import scenario_from_dict
    from moesim.iteration.sizing import guard
    from moesim.util.errors import MoesimWarning
    s = scenario_from_dict({**BASE, "cluster": {"gpu": "h100", "nodes": 18, "gpus_per_node": 8},
                            "placement": {"kind": "eplb", "redundant_experts": 136}, "sim": {"network": "fluid"}})
    with pytest.warns(MoesimWarning, match="144 GPUs"):
        guard(s)


@pytest.mark.slow  # a child process stopped or killed mid-run: seconds; CI runs it
def test_ctrl_c_stops_a_sweep_at_once_and_keeps_finished_points(tmp_path):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    d["model"]["num_hidden_layers"] = 8
    d["workload"]["tokens_per_gpu"] = 256
    scenario(tmp_path, yaml.safe_dump(d), "base.yaml")
    seeds = ", ".join(str(i) for i in range(1, 301))  # far more than can finish before the signal
    sweep = scenario(tmp_path, f"base: base.yaml\ngrid: {{seed: [{seeds}]}}\n", "sw.yaml")
    out = tmp_path / "out"
    # the default SIGINT disposition in the child, even where the test runs in a background job (which
    # starts with SIGINT ignored, and Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen([sys.executable, "-m", "moesim", "sweep", str(sweep), "-o", str(out), "-j", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((out / "points").glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    print(f"sweep stopped {took:.2f} s after Ctrl-C")
    assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err
    assert took < 10  # the target is 2 s; a loose bound here (shared machines), the figure is printed
    kept = len(list((out / "points").glob("*.json")))
    from moesim.studies.sweep import load_sweep
    from moesim.studies.sweep.run import _resolve, cached_result, point_key
    spec = load_sweep(sweep)
    found = sum(cached_result(out / "points" / f"{point_key(_resolve(spec, p)[1])}.json") is not None
                for p in spec.points())
    assert found == kept > 0  # every finished point is found again by the next run


@pytest.mark.slow  # a child process stopped or killed mid-run: seconds; CI runs it
def test_kill_9_mid_write_never_leaves_a_torn_result(tmp_path):
    """A writer killed with SIGKILL at random moments while it rewrites a 16 MB result over and over (each
    version one letter repeated): the file is always a whole version, never a mix or a prefix. A kill -9
    cannot be cleaned up after, so a hidden temporary file may stay beside it; it is never the result."""
    out = tmp_path / "result.json"
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from moesim.util.files import write_atomic
i = 0
while True:
    write_atomic(Path({str(out)!r}), "abcdefgh"[i % 8] * (16 << 20))
    i += 1
"""
    rng = np.random.default_rng(5)
    for _ in range(6):
        writer = subprocess.Popen([sys.executable, "-c", code])
        try:
            deadline = time.monotonic() + 60
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.05, 0.6)))
        finally:
            writer.kill()  # SIGKILL
            writer.wait()
        text = out.read_text()
        assert len(text) == 16 << 20 and text == text[0] * len(text)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".result.json.")] == ["result.json"]
