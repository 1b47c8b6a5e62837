"""Numbers that enter from files are checked before they are used (issue 34): trace rows, request rates,
cached surfaces and cached sweep points; JSON output is always valid JSON."""

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.util.files import to_json

ROOT = Path(__file__).resolve().parent.parent
SERVE = str(ROOT / "scenarios" / "mixtral-8x7b-serve-trace-a100.yaml")
SMALL = ["--set", "serving.requests=40", "--set", "serving.arrival={kind: poisson, rate_per_s: 4}", "--set",
         "model.num_hidden_layers=4", "-j", "1"]


@pytest.mark.parametrize("row, want", [
    ("0.5,nan,10", "line 3: input tokens nan"), ("0.5,inf,10", "line 3: input tokens inf"),
    ("0.5,1e30,10", "input tokens 1e+30 is not a whole number"), ("0.5,9223372036854775808,10", "9.22337e+18"),
    ("0.5,-3,10", "line 3: input tokens -3"), ("0.5,10", "line 3: no value for output_tokens"),
    ("nan,10,10", "arrival time nan"), ("0.5,10.5,10", "input tokens 10.5"),
])
def test_trace_rows_that_would_wrap_or_poison_are_refused_with_the_line(tmp_path, row, want):
    (tmp_path / "t.csv").write_text(f"arrival_s,input_tokens,output_tokens\n0.0,100,10\n{row}\n")
    r = CliRunner().invoke(main, ["serve", SERVE, "--set", f"serving.arrival.path={tmp_path / 't.csv'}", "--set",
                                  "serving.arrival.format=csv"])
    assert r.exit_code == 2 and want in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("rate", ["5e-324", "1e-300", "2e9"])
def test_rates_past_the_clocks_resolution_are_refused(rate):
    r = CliRunner().invoke(main, ["serve", SERVE, *SMALL, "--rate", rate, "--json"])
    assert r.exit_code == 2 and "serving.arrival.rate_per_s" in r.output


def test_json_output_is_valid_json_whatever_the_numbers():
    text = to_json({"p90": math.nan, "rows": [math.inf, 1.5, {"x": -math.inf}]})
    assert json.loads(text) == {"p90": None, "rows": [None, 1.5, {"x": None}]} and "NaN" not in text


@pytest.mark.slow  # two surface builds: seconds; CI runs it
def test_an_edited_cached_surface_is_rebuilt_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    first = CliRunner().invoke(main, ["serve", SERVE, *SMALL, "--json"])
    assert first.exit_code == 0, first.output
    files = sorted((tmp_path / "cache" / "surfaces").glob("*.json"))
    assert len(files) == 2
    doc = json.loads(files[0].read_text())
    doc["surface"]["time_s"] = [[t * 0.1 for t in row] for row in doc["surface"]["time_s"]]  # x0.1: plausible
    files[0].write_text(json.dumps(doc))
    a, b = (json.loads(f.read_text()) for f in files)  # and the other swapped with a copy of it
    files[1].write_text(json.dumps(a))
    again = CliRunner().invoke(main, ["serve", SERVE, *SMALL, "--json"])
    assert again.exit_code == 0 and again.stdout == first.stdout  # both rebuilt: the same answer as before
    assert json.loads(files[1].read_text())["key"] == files[1].stem  # each file holds its own grid again


def test_a_cached_sweep_point_that_breaks_throughput_times_time_is_run_again(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {base: mixtral-8x7b, num_hidden_layers: 3}\n"
                                        "cluster: {gpu: a100-80gb, nodes: 1, gpus_per_node: 2}\n"
                                        "workload: {tokens_per_gpu: 64}\n")
    (tmp_path / "sw.yaml").write_text("base: base.yaml\ngrid: {placement.kind: [contiguous, eplb]}\n")
    run = ["sweep", str(tmp_path / "sw.yaml"), "-o", str(tmp_path / "o"), "-j", "1", "--json"]
    assert CliRunner().invoke(main, run).exit_code == 0
    point = sorted((tmp_path / "o" / "points").glob("*.json"))[0]
    doc = json.loads(point.read_text())
    doc["result"]["throughput_tokens_per_s"] *= 10
    point.write_text(json.dumps(doc))
    summary = json.loads(CliRunner().invoke(main, run).stdout)
    assert summary["ran"] == 1 and summary["cached"] == 1


def test_a_request_stream_too_big_for_this_machine_is_refused_before_it_is_drawn(monkeypatch):
    import moesim.iteration.sizing as sizing
    monkeypatch.setattr(sizing, "available_bytes", lambda: 4 * 2**30)  # a 4 GiB machine, whatever runs this
    r = CliRunner().invoke(main, ["serve", SERVE, *SMALL, "--set", "serving.requests=100000000"])
    assert r.exit_code == 2 and "100,000,000 requests need about" in r.output and "at most 230,935 requests" in r.output
    ok = CliRunner().invoke(main, ["check", SERVE, "--set", "serving.requests=100000000", "--set",
                                   "sim.size_guard=false"])
    assert ok.exit_code == 0


def test_surfaces_too_long_to_build_are_refused_before_a_point_runs(tmp_path, monkeypatch):
    """moesim serve estimates its surface build (moesim/serve/size.py) and refuses one past SERVE_MAX_S (here
    lowered to 1 s, against the 2 h of a real run) with the field and the fix; sim.size_guard=false passes."""
    from moesim.iteration.scenario import load_scenario
    from moesim.serve.deploy import deployment_of
    from moesim.serve.run import grids_of, requests_of
    from moesim.serve.size import guard_surfaces, wave_cost
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path))
    monkeypatch.setattr("moesim.serve.size.SERVE_MAX_S", 1.0)
    ran = []
    monkeypatch.setattr("moesim.serve.surface._task", lambda item: ran.append(item))
    r = CliRunner().invoke(main, ["serve", SERVE, *SMALL])
    assert r.exit_code == 2 and not ran, r.output
    line = r.output.strip().splitlines()[-1]
    assert ": serving.surface: the iteration surfaces need about " in line and "sim.size_guard=false" in line
    s = load_scenario(SERVE, [*SMALL[1:6:2], "sim.size_guard=false"])
    grids = grids_of(s, deployment_of(s), requests_of(s))
    guard_surfaces(s, grids, lambda g: False, 1)  # overridden: no error
    cost = wave_cost(grids, lambda g: False, 1)
    assert cost.points == sum(len(g.tokens) * len(g.contexts) for g in grids) and cost.seconds >= 0.2 * cost.points
    assert wave_cost(grids, lambda g: True, 1).points == 0  # cached surfaces cost nothing
