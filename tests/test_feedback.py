"""Feedback on long work: progress lines with an ETA that ignores cached items, Ctrl-C keeping what
finished (compare), routing made once across placement variants, and the size guard's one-line refusal."""

import io
import json

import pytest
from click.testing import CliRunner

from moesim import api
from moesim.cli.main import main
from moesim.iteration.build import RouteReuse
from moesim.iteration.scenario import scenario_from_dict
from moesim.iteration.sizing import estimate
from moesim.studies import compare
from moesim.util.progress import Progress

SCEN = """seed: 2
model: {base: mixtral-8x7b, num_hidden_layers: 2}
cluster: {gpu: h100, nodes: 1, gpus_per_node: 4}
router: {stats: {kind: zipf, alpha: 1.2}}
workload: {tokens_per_gpu: 64, scope: moe_layers}
"""


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_eta_counts_only_items_that_ran():
    out, clock = io.StringIO(), Clock()
    p = Progress("sweep", 10, cached=6, stream=out, every_s=0.0, clock=clock)
    assert p.eta_s() is None
    clock.t = 4.0
    p.step("a")  # one item in 4 s, 3 left: 12 s
    assert p.eta_s() == pytest.approx(12.0)
    assert out.getvalue().splitlines()[-1] == "[sweep] 7/10, 6 cached  4 s ETA 12 s  a"
    for _ in range(3):
        p.step()
    p.close()
    assert out.getvalue().splitlines()[-1].startswith("[sweep] 10/10, 6 cached")


def test_progress_off_a_terminal_prints_at_most_every_interval():
    out, clock = io.StringIO(), Clock()
    p = Progress("compare", 100, stream=out, every_s=2.0, clock=clock)
    for i in range(100):
        clock.t = i * 0.1
        p.step()
    p.close()
    lines = out.getvalue().splitlines()
    assert 4 <= len(lines) <= 7 and lines[-1].startswith("[compare] 100/100")


def test_variants_share_routing_and_give_the_runs_alone(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCEN)
    reuse = RouteReuse()
    a = api.run(path, ["placement.kind=eplb", "placement.redundant_experts=4"], reuse=reuse)
    b = api.run(path, ["placement.kind=contiguous"], reuse=reuse)
    assert reuse.hits >= 2  # b reused a's window and layers
    alone = api.run(path, ["placement.kind=contiguous"])
    assert b.doc == alone.doc and a.doc != b.doc


def test_contexts_share_the_moe_layers_and_give_the_runs_alone(tmp_path):
    """A surface's points along one token row differ only in context: the plan and every MoE layer are made
    once, the attention (whole model, over each context) for each, and each run equals the run alone."""
    path = tmp_path / "s.yaml"
    path.write_text(SCEN.replace("scope: moe_layers", "scope: whole_model, mode: decode"))
    reuse = RouteReuse(layers=True)
    sets = ["placement.kind=eplb", "placement.redundant_experts=4"]
    short = api.run(path, [*sets, "workload.context_tokens=256"], reuse=reuse)
    hits = reuse.hits
    long = api.run(path, [*sets, "workload.context_tokens=8192"], reuse=reuse)
    assert reuse.hits >= hits + 3  # the plan and both layers
    assert long.doc == api.run(path, [*sets, "workload.context_tokens=8192"]).doc
    assert short.doc == api.run(path, [*sets, "workload.context_tokens=256"]).doc
    assert long.summary.iteration_time_s > short.summary.iteration_time_s  # the attention reads more KV


def test_a_given_plan_is_part_of_what_layers_are_shared_under(tmp_path):
    """Runs of one scenario on two hand-given plans (rebalancing studies) do not share their layers."""
    import numpy as np
    import yaml

    from moesim.iteration.run import run_scenario
    from moesim.iteration.scenario import scenario_from_dict
    from moesim.placement import Placement
    s = scenario_from_dict(yaml.safe_load(SCEN))
    reuse = RouteReuse(layers=True)
    plans = [Placement(np.tile(np.arange(8), (2, 1)), 4), Placement(np.tile(np.arange(8)[::-1], (2, 1)), 4)]
    runs = [run_scenario(s, placement=p, reuse=reuse) for p in plans]
    alone = [run_scenario(s, placement=p) for p in plans]
    assert [r.doc for r in runs] == [r.doc for r in alone]


def test_affinity_variants_share_the_node_assignment_and_give_the_runs_alone(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCEN.replace("nodes: 1, gpus_per_node: 4", "nodes: 2, gpus_per_node: 2"))
    reuse = RouteReuse()
    api.run(path, ["placement.kind=affinity"], reuse=reuse)
    hits = reuse.hits
    b = api.run(path, ["placement.kind=affinity", "placement.redundant_experts=4"], reuse=reuse)
    assert reuse.hits >= hits + 3  # window, pairs and node assignment (plus the layers)
    assert b.doc == api.run(path, ["placement.kind=affinity", "placement.redundant_experts=4"]).doc


def test_compare_ctrl_c_keeps_finished_rows(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(SCEN)
    real, calls = compare.run_file, []

    def run(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(compare, "run_file", run)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compare", str(path), "--placements", "contiguous,eplb", "-o", str(out)])
    assert r.exit_code == 130, r.output
    rows = json.loads((out / "compare.json").read_text())
    assert [row["placement"] for row in rows] == ["contiguous"]
    assert "interrupted" in r.output and "[compare] 1/2" in r.output


def test_size_guard_refuses_in_one_line_and_can_be_overridden(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(SCEN)
    monkeypatch.setattr("moesim.iteration.sizing.available_bytes", lambda: 1e6)  # a machine with 1 MB
    r = CliRunner().invoke(main, ["run", str(path)])
    assert r.exit_code == 2
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {path}: cluster.nodes: this run needs about") and "sim.size_guard=false" in line
    ok = CliRunner().invoke(main, ["run", str(path), "--set", "sim.size_guard=false", "--json"])
    assert ok.exit_code == 0, ok.output
    s = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 2}})
    bigger = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 32}})
    assert estimate(bigger).bytes > estimate(s).bytes > 0


def test_the_size_estimate_counts_every_accumulation_step():
    """Training without a pipeline simulates each accumulation step: 20 of them hold 20 times the flows (the
    issue's run estimated 3 s for 1 and for 20 steps; 20 took 33 s). A pipeline composes them from one."""
    def est(steps, stages=1):
        return estimate(scenario_from_dict({
            "model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 4},
            "workload": {"mode": "training", "tokens_per_gpu": 1024, "accumulation_steps": steps,
                         "pipeline_stages": stages}}))

    one, twenty = est(1), est(20)
    assert twenty.flows == pytest.approx(20 * one.flows)
    assert twenty.seconds > 1.5 * one.seconds and twenty.bytes > one.bytes
    assert est(20, stages=4).flows == est(4, stages=4).flows


def test_check_prints_the_size_estimate_as_a_yaml_comment(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCEN)
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1].startswith("# size estimate: about ")
