"""`moesim plan` on serving: derived redundant counts, the batch search, answers per GPU type, pruning,
interruption, bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.exec import SerialExecutor
from moesim.plan import load_plan, pareto, plan
from moesim.plan.space import deployments, redundant_for

PLAN = """model: {base: mixtral-8x7b, num_hidden_layers: 2}
gpus: GPUS
gpus_per_node: 4
serving:
  input_tokens: {kind: constant, value: 512}
  output_tokens: {kind: constant, value: 64}
  slo: {ttft_s: 0.5, tpot_s: 0.05}
target: {output_tokens_per_s: TARGET}
search: {nodes: [3], ep_gpus: [12], redundant_slots: [0], max_batch: [2, 16, 64]}
effort: {requests: 100, max_requests: 300, rate_steps: 3}
scenario: {router: {stats: {kind: dirichlet, concentration: 8}}, comm: {algorithm: flat}}
seed: 2
"""


def _plan(tmp_path, monkeypatch, target=1, gpus="{h100: {price_per_hour: 2.5}}", executor=None):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", str(target)).replace("GPUS", gpus))
    p, path = load_plan(tmp_path / "p.yaml")
    return plan(p, path.parent, executor or SerialExecutor())


def test_redundant_counts_are_derived_for_every_gpu_count():
    assert redundant_for(256, 576, 0) == 320  # 72 nodes of 8 H100: 576 GPUs need 320
    assert redundant_for(256, 32, 0) == 0 and redundant_for(256, 32, 1) == 32
    assert redundant_for(256, 144, 0) == 32  # DeepSeek-V3's EP144 decode: 288 slots
    for g in range(1, 300):
        assert (256 + redundant_for(256, g, 0)) % g == 0


def test_the_planner_finds_a_layout_needing_an_unlisted_redundant_count_and_a_larger_batch(tmp_path, monkeypatch):
    # 8 experts on 12 GPUs need 4 redundant experts, which no one listed (slots: [0] extra per GPU)
    first = _plan(tmp_path, monkeypatch)
    rows = [r for r in first["rows"] if r["feasible"]]
    assert rows and all(r["gpus"] == 12 for r in rows)
    by_batch = {r["max_batch"]: r["output_tokens_per_s"] for r in rows}
    assert by_batch[16] > by_batch[2] * 1.5  # bigger batches serve more at the same SLO
    # a target only a larger batch than the smallest can meet
    target = (by_batch[2] + by_batch[16]) / 2
    res = _plan(tmp_path, monkeypatch, target=round(target))
    assert res["best"] is not None and res["best"]["max_batch"] >= 16
    assert res["best"]["output_tokens_per_s"] >= target
    small = next(r for r in res["rows"] if r["max_batch"] == 2)
    assert not small["meets_target"]


def test_the_light_probe_runs_few_requests_and_the_bisection_the_full_stream(tmp_path, monkeypatch):
    """The light-load probe only asks whether the SLO holds without queueing: ``effort.light_requests``
    requests; every other trial fills the decoding slots (at least ``effort.requests``)."""
    import moesim.plan.search as search
    seen, real = [], search.simulate_serving

    def spy(s, dep, req, surfaces, **kw):
        seen.append((s.serving.arrival.rate_per_s, len(req.input_tokens)))
        return real(s, dep, req, surfaces, **kw)

    monkeypatch.setattr(search, "simulate_serving", spy)
    _plan(tmp_path, monkeypatch)
    light = [rate for rate, n in seen if n == 64]  # effort.light_requests' default
    full = [rate for rate, n in seen if n != 64]
    assert light and full and all(100 <= n <= 300 for _, n in seen if n != 64)  # effort: requests 100, max 300
    nxt = next((i for i, (_, n) in enumerate(seen[1:], 1) if n == 64), len(seen))
    assert seen[0][1] == 64 and seen[0][0] < min(r for r, _ in seen[1:nxt])  # the probe first, at the lowest rate


def test_answer_per_gpu_type_and_overall(tmp_path, monkeypatch):
    res = _plan(tmp_path, monkeypatch, gpus="{h100: {price_per_hour: 2.5}, h200: {price_per_hour: 4.0}}")
    per = res["best_per_gpu"]
    assert set(per) == {"h100", "h200"}
    assert per["h100"]["gpu"] == "h100" and per["h200"]["gpu"] == "h200"
    assert res["best"]["gpu"] == "h100"  # 12 x $2.5 is cheaper than 12 x $4.0
    assert res["best"]["cost_per_million_tokens"] == pytest.approx(
        res["best"]["cost_per_hour"] / (res["best"]["output_tokens_per_s"] * 3600) * 1e6)
    assert [r["label"] for r in res["frontier"]][0].startswith("h100")


def test_costlier_deployments_are_pruned_once_a_type_meets_the_target(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    text = PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}").replace(
        "nodes: [3], ep_gpus: [12]", "nodes: [3, 9], ep_gpus: [12]").replace("rate_steps: 3}",
                                                                             "rate_steps: 3, cost_slack: 0.5}")
    (tmp_path / "p.yaml").write_text(text)
    p, path = load_plan(tmp_path / "p.yaml")
    res = plan(p, path.parent, SerialExecutor(), wave=1)
    big = [r for r in res["rows"] if r["nodes"] == 9]
    assert big and all("not simulated" in r["reason"] for r in big)


def test_space_enumerates_aggregated_ep_sizes_and_disaggregated_splits(tmp_path):
    (tmp_path / "p.yaml").write_text("model: deepseek-v3\ngpus: {h800: {price_per_hour: 2}}\n"
                                     "search: {nodes: [4], deployment: [aggregated, disaggregated], "
                                     "prefill_share: [0.25, 0.5]}\n")
    p, _ = load_plan(tmp_path / "p.yaml")
    labels = [d.label() for d in deployments(p)]
    assert any("agg EP8x4" in x for x in labels) and any("agg EP32x1" in x for x in labels)
    assert any("disagg P8/D24" in x for x in labels) and any("disagg P16/D16" in x for x in labels)


class _StopAt:
    """An executor that raises KeyboardInterrupt (a user's Ctrl-C) when the search reaches a ``gpu``
    deployment."""

    def __init__(self, gpu: str) -> None:
        self.gpu = gpu

    def run(self, fn, items):
        for item in items:
            if fn.__name__ == "search_batch" and item[2]["cluster"]["gpu"] == self.gpu:
                raise KeyboardInterrupt
            yield item, fn(item)


def test_interrupted_plan_keeps_the_finished_deployments(tmp_path, monkeypatch):
    res = _plan(tmp_path, monkeypatch, gpus="{h100: {price_per_hour: 2.5}, h200: {price_per_hour: 4.0}}",
                executor=_StopAt("h200"))
    assert res["interrupted"]
    done = [r for r in res["rows"] if r["feasible"]]
    assert done and {r["gpu"] for r in done} == {"h100"}
    assert any("interrupted" in r["reason"] for r in res["rows"] if r["gpu"] == "h200")


def test_unmeetable_slo_is_one_clear_line_exit_2_and_outputs_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}")
                                     .replace("tpot_s: 0.05", "tpot_s: 0.00001"))
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1", "-o", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "misses the SLO even at a light load" in r.output
    assert "no deployment meets the target" in r.output.splitlines()[-1]
    assert json.loads((tmp_path / "out" / "plan.json").read_text())["best"] is None


@pytest.mark.parametrize("text,words", [
    ("model: deepseek-v3\ngpus: {h800: {}}\n", "price_per_hour"),
    ("model: deepseek-v3\ngpus: {h800: {price_per_hour: 2}}\nworkload: {mode: decode}\n", "plans now search"),
    ("model: deepseek-v3\ngpus: {h800: {price_per_hour: -1}}\n", "greater than 0"),
    ("model: deepseek-v3\ngpus: {h800: {price_per_hour: 2}}\nserving: {deployment: {kind: aggregated}}\n",
     "searched by the planner"),
    ("model: deepseek-v3\ngpus: {h800: {price_per_hour: 2}}\nsearch: {nodez: [1]}\n", "unknown key"),
])
def test_bad_plan_file_is_one_clear_error(tmp_path, text, words):
    (tmp_path / "bad.yaml").write_text(text)
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_plan_report_has_the_capacity_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}"))
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "h100: 12 GPUs" in r.output and "overall:" in r.output
    rep = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "-o", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count('class="chart" data-spec=') == 2  # capacity, cost
    assert "Recommendation: h100 3n agg EP12" in page
    assert page.count("class='best'") == 1


def test_pareto_frontier_keeps_only_undominated():
    rows = [{"cost_per_hour": 1.0, "output_tokens_per_s": 100}, {"cost_per_hour": 2.0, "output_tokens_per_s": 90},
            {"cost_per_hour": 2.0, "output_tokens_per_s": 150}]
    assert [r["output_tokens_per_s"] for r in pareto(rows)] == [100, 150]


def test_the_python_api_plans_a_plan_file(tmp_path, monkeypatch):
    from moesim import api
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}"))
    doc = api.plan(tmp_path / "p.yaml", jobs=1)
    assert doc["rows"] and all(not isinstance(v, dict) for v in doc["rows"][0].values())
    assert doc["best"] is not None and doc["best"]["gpu"] == "h100"


CLOSED = """model: {base: mixtral-8x7b, num_hidden_layers: 2}
gpus: {h100: {price_per_hour: 2.5}}
gpus_per_node: 4
serving:
  input_tokens: {kind: constant, value: 512}
  output_tokens: {kind: constant, value: 64}
  slo: {ttft_s: 0.5, tpot_s: 0.02}
target: {concurrency: CONC}
search: {nodes: [1], ep_gpus: [4], redundant_slots: [0], max_batch: [16], attention_tp: [1, 4], moe: [ep, tp]}
effort: {requests: 60, max_requests: 200}
scenario: {router: {stats: {kind: dirichlet, concentration: 8}}, comm: {algorithm: flat}}
seed: 2
"""


def test_a_concurrency_target_plans_closed_loop_and_searches_tensor_parallel_experts(tmp_path, monkeypatch):
    """A concurrency target runs the serving loop closed (the concurrency searched by bisection): each row's
    capacity_concurrency is the most requests in flight meeting the SLO, and the target is met when it reaches
    the target. The moe axis adds tensor-parallel experts for the TP group (moe_tp = attention_tp = 4)."""
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(CLOSED.replace("CONC", "4"))
    p, path = load_plan(tmp_path / "p.yaml")
    labels = [d.label() for d in deployments(p)]
    assert len(labels) == 3 and sum("moe-tp" in x for x in labels) == 1  # (tp1, ep), (tp4, ep), (tp4, tp)
    res = plan(p, path.parent, SerialExecutor())
    rows = [r for r in res["rows"] if r["feasible"]]
    assert rows and all(r["capacity_concurrency"] >= 1 for r in rows)
    assert {r["moe_tp"] for r in rows} == {1, 4}
    for r in rows:
        assert r["meets_target"] == (r["capacity_concurrency"] >= 4)


def test_the_planner_searches_engine_profiles(tmp_path, monkeypatch):
    """search.engine: each deployment runs once per engine profile; rows and labels say which; the budget
    is the engine's (no token_budget written), the batch limit the planner's."""
    from moesim.plan.space import scenario_dict
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    text = PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}").replace(
        "max_batch: [2, 16, 64]}", "max_batch: [16], engine: [vllm, sglang]}")
    (tmp_path / "p.yaml").write_text(text)
    p, path = load_plan(tmp_path / "p.yaml")
    deps = deployments(p)
    assert [d.engine for d in deps] == ["vllm", "sglang"] and deps[0].label().endswith(" vllm")
    sv = scenario_dict(p, deps[0], 16, 8)["serving"]
    assert sv["engine"] == "vllm" and sv["scheduler"] == {"max_batch": 16}
    res = plan(p, path.parent, SerialExecutor())
    assert {r["engine"] for r in res["rows"]} == {"vllm", "sglang"}


def test_an_unknown_engine_in_a_plan_is_one_clear_error(tmp_path):
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}")
                                     .replace("max_batch: [2, 16, 64]}", "max_batch: [16], engine: [tgi]}"))
    out = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml")])
    assert out.exit_code == 2 and "search.engine" in out.output and "Traceback" not in out.output


def test_a_pool_of_workers_gives_the_rows_of_one_worker(tmp_path, monkeypatch):
    """Every (deployment, batch limit) is a task of its own and a deployment's larger limits are left out
    once its smaller ones decide: two workers, which take tasks as they free up, give the serial rows."""
    from moesim.exec import LocalProcessExecutor
    gpus = "{h100: {price_per_hour: 2.5}, h200: {price_per_hour: 4.0}}"
    serial = _plan(tmp_path, monkeypatch, gpus=gpus)
    pool = _plan(tmp_path, monkeypatch, gpus=gpus, executor=LocalProcessExecutor(2))
    assert pool["rows"] == serial["rows"] and len(serial["rows"]) >= 6


def test_assemble_searches_batch_limits_upwards_until_one_decides():
    from moesim.plan.search import assemble
    ok = lambda b, t, short=False: {"max_batch": b, "summary": {}, "_tput": t, "_kv_short": short}  # noqa: E731
    batches = [2, 4, 8, 16]
    assert assemble(batches, {2: ok(2, 10)}) is None  # the next limit may still raise the capacity
    rows = assemble(batches, {2: ok(2, 10), 4: ok(4, 10.1)})  # under 2% more: the rest not searched
    assert [r["max_batch"] for r in rows] == batches and "did not raise" in rows[2]["reason"]
    assert all(not k.startswith("_") for r in rows for k in r)
    rows = assemble(batches, {2: ok(2, 10), 4: ok(4, 20, short=True)})
    assert "KV cache holds fewer than 4" in rows[2]["reason"]
    miss = {"max_batch": 4, "reason": "misses the SLO even at a light load", "_stop": True}
    assert [r["max_batch"] for r in assemble(batches, {2: ok(2, 10), 4: miss})] == [2, 4]
    error = {"max_batch": 2, "reason": "does not fit"}  # one limit that cannot run: the next is searched
    assert assemble(batches, {2: error}) is None
    assert len(assemble(batches, {2: error, 4: ok(4, 5), 8: ok(8, 9), 16: ok(16, 12)})) == 4


def test_a_search_longer_than_max_hours_is_refused_before_its_points_run(tmp_path, monkeypatch):
    """The estimate of the first wave (moesim/plan/guard.py) is past limits.max_hours: exit 2, one line naming
    the field, how long, the widest axes and the fix, and no surface point was simulated."""
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    text = PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}") + "limits: {max_hours: 1e-6}\n"
    (tmp_path / "p.yaml").write_text(text)
    ran = []
    monkeypatch.setattr("moesim.serve.surface._task", lambda item: ran.append(item))
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1"])
    assert r.exit_code == 2 and not ran, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path / 'p.yaml'}: limits.max_hours: 1 deployments need about ")
    assert "estimated" in line and "(search.max_batch: 3 values)" in line and "raise limits.max_hours" in line


def test_a_wave_that_runs_slower_than_estimated_is_stopped_at_its_measured_pace(tmp_path, monkeypatch):
    """The estimate lets the wave start; the pace measured while it runs projects past what is left: exit 2
    naming the measured pace (overrun's arithmetic by hand below)."""
    monkeypatch.setattr("moesim.plan.planner.overrun", lambda done, total, el, left, w: 7200.0 if done >= 2 else None)
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}"))
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1"])
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert "need about 2.0 h of simulation" in line and "at the pace of the first 2)" in line


def test_overrun_projects_the_measured_pace():
    from moesim.plan.guard import CHECK_AFTER_S, overrun
    late = CHECK_AFTER_S + 10
    assert overrun(4, 40, late, 1e9, 2) is None  # on time
    assert overrun(4, 40, late, 100.0, 2) == pytest.approx(late / 4 * 40)  # 10 x the time so far
    assert overrun(3, 40, late, 100.0, 2) is None  # fewer than 2 points per worker: too early to tell
    assert overrun(4, 40, CHECK_AFTER_S / 2, 1.0, 2) is None  # too soon
    assert overrun(40, 40, late, 1.0, 2) is None  # done


def test_a_later_wave_past_max_hours_ends_the_search_with_what_finished(tmp_path, monkeypatch):
    from moesim.plan import guard
    calls = []

    def cost(grids, cached, workers):
        calls.append(len(grids))
        return guard.WaveCost(0.0 if len(calls) == 1 else 1e9, 7, 1)

    monkeypatch.setattr("moesim.plan.planner.wave_cost", cost)
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    text = PLAN.replace("TARGET", "1e9").replace("GPUS", "{h100: {price_per_hour: 2.5}}").replace(
        "nodes: [3], ep_gpus: [12]", "nodes: [3, 6], ep_gpus: [12]").replace(  # nothing meets it: no pruning
        "rate_steps: 3}", "rate_steps: 3, cost_slack: 0.5}")  # 6 nodes in a wave of their own
    (tmp_path / "p.yaml").write_text(text)
    p, path = load_plan(tmp_path / "p.yaml")
    res = plan(p, path.parent, SerialExecutor(), wave=1)
    assert len(calls) == 2 and res["stopped"] and "limits.max_hours" in res["stopped"] and not res["interrupted"]
    assert {r["nodes"] for r in res["rows"] if r["feasible"]} == {3}
    assert all("stopped at limits.max_hours" in r["reason"] for r in res["rows"] if r["nodes"] == 6)
    from moesim.present.tables import plan_table
    text = plan_table(res)
    assert "overall so far (stopped at limits.max_hours: partial): nothing meets" in text and "; STOPPED: " in text


def test_screening_reports_progress(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "p.yaml").write_text(PLAN.replace("TARGET", "1").replace("GPUS", "{h100: {price_per_hour: 2.5}}"))
    p, path = load_plan(tmp_path / "p.yaml")
    plan(p, path.parent, SerialExecutor(), lambda phase, done, total, note: seen.append((phase, done, total)))
    assert [x for x in seen if x[0] == "screening"] == [("screening", 1, 1)]
    assert seen.index(("screening", 1, 1)) < next(i for i, x in enumerate(seen) if x[0] == "surface points")
