"""`moesim plan`: candidates, feasibility with reasons, the cheapest meeting the target, the frontier."""

import json

from click.testing import CliRunner

from moesim.cli import main
from moesim.plan import Candidate, pareto

PLAN = """model: {base: deepseek-v3, num_hidden_layers: 5}
gpus: {h800: {price_per_hour: 2.0}, h200: {price_per_hour: 3.0}}
gpus_per_node: 8
workload: {mode: decode, tokens_per_gpu: 64, context_tokens: CONTEXT}
target: {throughput_tokens_per_s: 1}
limits: {max_gpus: 16}
vary: {nodes: [1, 2, 4], placement: [contiguous, eplb]}
seed: 1
"""


def _run(tmp_path, context=2048, target=1):
    (tmp_path / "p.yaml").write_text(PLAN.replace("CONTEXT", str(context)).replace(
        "throughput_tokens_per_s: 1", f"throughput_tokens_per_s: {target}"))
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_plan_picks_the_cheapest_candidate_meeting_the_target(tmp_path):
    res = _run(tmp_path)
    rows = res["rows"]
    assert len(rows) == 2 * 3 * 2
    too_big = [r for r in rows if r["nodes"] == 4]
    assert all(not r["feasible"] and "max_gpus" in r["reason"] for r in too_big)
    meeting = [r for r in rows if r["meets_target"]]
    assert res["best"]["cost_per_hour"] == min(r["cost_per_hour"] for r in meeting)
    assert res["best"]["gpu"] == "h800" and res["best"]["nodes"] == 1  # 8 x $2 is the cheapest
    for r in res["runners_up"]:
        assert r["cost_over_best"] >= 0


def test_memory_infeasible_candidates_say_by_how_much(tmp_path):
    res = _run(tmp_path, context=400_000)  # a 400k-token KV cache per sequence cannot fit
    notes = [r["reason"] for r in res["rows"] if r["nodes"] < 4]
    assert all("GiB per GPU" in n and "over by" in n for n in notes)
    assert res["best"] is None


def test_unreachable_target_gives_no_best(tmp_path):
    assert _run(tmp_path, target=10**12)["best"] is None


def test_pareto_frontier_keeps_only_undominated():
    cs = [Candidate("a", 1, "x", 0, None, 1.0, gpus=8, throughput_tokens_per_s=100),
          Candidate("b", 1, "x", 0, None, 2.0, gpus=8, throughput_tokens_per_s=90),   # costs more, slower
          Candidate("c", 2, "x", 0, None, 1.0, gpus=16, throughput_tokens_per_s=150)]
    assert [c.gpu for c in pareto(cs)] == ["a", "c"]


def test_bad_plan_file_is_one_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: deepseek-v3\ngpus: {h800: {}}\n")
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 2 and "price_per_hour" in r.output and "Traceback" not in r.output


def test_plan_report_has_the_cost_and_throughput_figure(tmp_path):
    (tmp_path / "p.yaml").write_text(PLAN.replace("CONTEXT", "2048"))
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    rep = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "-o", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "Recommendation: 8 x h800" in page


def test_models_without_a_shape_say_memory_was_not_checked(tmp_path):
    (tmp_path / "p.yaml").write_text("model: {name: noshape, hidden_size: 1024, moe_intermediate_size: 512, "
                                     "n_routed_experts: 16, num_experts_per_tok: 2, num_hidden_layers: 2}\n"
                                     "gpus: {h800: {price_per_hour: 2}}\n"
                                     "workload: {tokens_per_gpu: 64}\nvary: {nodes: [2]}\n")
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "memory not checked" in r.output
