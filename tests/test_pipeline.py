"""Pipeline parallelism: the schedule DES against the bubble formula, stage hand-overs as flows computed by
hand, memory per GPU of DeepSeek-V3 layouts computed by hand, and bad pipelines refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from moesim.cli import main
from moesim.hw.topology import build_topology
from moesim.iteration.scenario import scenario_from_dict
from moesim.iteration.stages import stage_scenario
from moesim.model.memory import memory_per_gpu
from moesim.pipeline import run_pipeline
from moesim.pipeline.run import hand_overs
from moesim.pipeline.schedule import one_f_one_b, simulate_pipeline
from moesim.util.errors import ScenarioError


@pytest.mark.parametrize("p, m", [(2, 1), (2, 4), (4, 8), (8, 3), (8, 32)])
def test_1f1b_bubble_is_p_minus_1_over_m_plus_p_minus_1(p, m):
    """Equal stages (forward 1 s, backward 2 s), free hand-overs: the step is (m + p − 1)(f + b) and the
    stages idle (p − 1)/(m + p − 1) of it; inference (forward only) (m + p − 1) f, the same share."""
    tl = simulate_pipeline(np.full(p, 1.0), np.full(p, 2.0), m)
    assert tl.step_s == pytest.approx((m + p - 1) * 3.0)
    assert tl.bubble() == pytest.approx((p - 1) / (m + p - 1))
    inf = simulate_pipeline(np.full(p, 1.0), None, m)
    assert inf.step_s == pytest.approx(m + p - 1) and inf.bubble() == pytest.approx((p - 1) / (m + p - 1))


def test_1f1b_order_and_memory_bound():
    """Stage 0 of 4 with 6 micro-batches: 3 warm-up forwards, then F/B pairs, then the last backwards; no
    stage ever holds more than p − s micro-batches' activations (forwards not yet matched by a backward)."""
    order = [f"{o.kind}{o.micro_batch}" for o in one_f_one_b(0, 4, 6)]
    assert order == ["F0", "F1", "F2", "F3", "B0", "F4", "B1", "F5", "B2", "B3", "B4", "B5"]
    for s in range(4):
        live = peak = 0
        for o in one_f_one_b(s, 4, 6):
            live += 1 if o.kind == "F" else -1
            peak = max(peak, live)
        assert peak == 4 - s


def test_the_slowest_stage_sets_the_pace():
    """Stages of 1, 1, 3 s forward (inference, 10 micro-batches): the last stage's 10 passes at 3 s follow
    the first micro-batch's 2 s through the others: 2 + 30 = 32 s."""
    tl = simulate_pipeline(np.array([1.0, 1.0, 3.0]), None, 10)
    assert tl.step_s == pytest.approx(32.0)


def pp(**workload):
    wl = {"mode": "training", "tokens_per_gpu": 512, "pipeline_stages": 2, "accumulation_steps": 4, **workload}
    return scenario_from_dict({"seed": 5, "model": {"base": "deepseek-v2-lite", "num_hidden_layers": 6},
                               "cluster": {"gpu": "h100", "nodes": 2, "gpus_per_node": 2}, "workload": wl})


def test_hand_overs_cross_the_nic_at_its_bandwidth():
    """Two stages of one node (2 GPUs) each: GPU 0 → 2 and 1 → 3, 512 tokens × 2,048 hidden × 2 B = 2 MiB
    each, one NIC per GPU: a transfer takes 2 MiB / NIC bandwidth plus the path's latency."""
    s = pp()
    topo = build_topology(s.cluster)
    links, nbytes = hand_overs(s, topo)
    assert nbytes == 512 * 2048 * 2 and len(links) == 1
    res = run_pipeline(s)
    t = res.timeline.transfers[0]
    hops = links[0].paths[0][links[0].paths[0] >= 0]
    nic = topo.capacity_Bps[hops].min()  # the NICs: each GPU's own, so the two flows do not share one
    assert t[4] - t[3] == pytest.approx(nbytes / nic + topo.latency_s[hops].sum(), rel=1e-6)


def test_a_pipelined_step_follows_its_stages():
    """Forward and backward per stage from the stage run's layer rows add up to its iteration (less the
    gradient sync, which each stage does for its own blocks: 1/p of it); the step is the schedule's."""
    res = run_pipeline(pp())
    doc, pipe = res.doc, res.doc["pipeline"]
    stage_sync = sum(res.stage.summary.totals.stages.get(n, 0.0) for n in ("gradient_sync", "expert_gradient_sync"))
    both = sum(pipe["forward_s_per_micro_batch"]) + sum(pipe["backward_s_per_micro_batch"])
    assert both + stage_sync == pytest.approx(res.stage.summary.iteration_time_s, rel=1e-9)
    assert doc["time_s"] == pytest.approx(pipe["schedule_s"] + stage_sync / 2)
    assert pipe["blocks_per_stage"] == [3, 3] and pipe["micro_batches"] == 4
    assert doc["tokens_per_iteration"] == 4 * 512 * 2
    assert pipe["bubble_fraction"] >= pipe["bubble_fraction_equal_stages"] - 0.05


def test_inference_pipelines_default_to_one_micro_batch_per_stage():
    res = run_pipeline(pp(mode="prefill", accumulation_steps=1))
    assert res.doc["pipeline"]["schedule"] == "forward" and res.doc["pipeline"]["micro_batches"] == 2
    assert res.doc["pipeline"]["backward_s_per_micro_batch"] is None


@pytest.mark.parametrize("workload, match", [
    ({"pipeline_stages": 3}, "do not split into 3 stages"),
    ({"pipeline_stages": 8, "accumulation_steps": 1}, "exceed the model's"),
    ({"pipeline_micro_batches": 4}, "accumulation_steps"),
    ({"micro_batches": 2, "mode": "prefill", "accumulation_steps": 1}, "two-batch overlap"),
    ({"pipeline_stages": 1, "pipeline_micro_batches": 4, "mode": "prefill", "accumulation_steps": 1},
     "applies to a pipeline"),
])
def test_bad_pipelines_are_refused(workload, match):
    with pytest.raises(ScenarioError, match=match):
        pp(**workload)


def test_pp_stages_over_layers_is_one_line_exit_2(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("model: {base: deepseek-v2-lite, num_hidden_layers: 4}\ncluster: {gpu: h100, nodes: 1, "
                 "gpus_per_node: 8}\nworkload: {pipeline_stages: 8}\n")
    out = CliRunner().invoke(main, ["run", str(f)])
    assert out.exit_code == 2 and "workload.pipeline_stages" in out.output and "Traceback" not in out.output


def test_moesim_run_prints_a_pipelined_step(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("model: {base: deepseek-v2-lite, num_hidden_layers: 6}\ncluster: {gpu: h100, nodes: 2, "
                 "gpus_per_node: 2}\nworkload: {mode: training, tokens_per_gpu: 256, pipeline_stages: 2, "
                 "accumulation_steps: 3}\n")
    out = CliRunner().invoke(main, ["run", str(f), "-o", str(tmp_path / "o"), "--trace", str(tmp_path / "t.json")])
    assert out.exit_code == 0, out.output
    assert "2 pipeline stages of 2 GPUs" in out.output and "bubble:" in out.output
    assert (tmp_path / "o" / "result.json").is_file() and (tmp_path / "t.json").is_file()


# ---- memory per GPU of DeepSeek-V3 layouts, by hand ------------------------------------------------------
H, F, E, MOE, DENSE, V = 7168, 2048, 256, 58, 3, 129280
EXPERT = 3 * H * F  # 44,040,192 parameters, FP8: one byte each
# MLA per block: q_a, q_b (128 heads x 192), kv_a (512 + 64), kv_b (128 x (128 + 128)), o (128 x 128 -> H)
ATTN = H * 1536 + 1536 * 128 * 192 + H * 576 + 512 * 128 * 256 + 128 * 128 * H
DENSE_FFN = 3 * H * 18432


def v3(nodes: int, **workload):
    return scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "h200", "nodes": nodes,
                                                                   "gpus_per_node": 8},
                               "workload": {"mode": "decode", "tokens_per_gpu": 1, "context_tokens": 1, **workload}})


@pytest.mark.parametrize("layout, nodes, workload, experts, other", [
    # SGLang --tp 8: attention TP8, every expert sharded over the 8 GPUs (32 experts' worth each)
    ("TP8-EP1", 1, {"attention_tp": 8, "moe_tp": 8}, E / 8 * MOE * EXPERT,
     (61 * ATTN + DENSE * DENSE_FFN + MOE * EXPERT) / 8 + MOE * E * H + 2 * V * H * 2),
    # DP attention, EP8: each GPU 32 whole experts, attention, dense and shared experts replicated
    ("TP8-EP8-DPattn", 1, {}, E / 8 * MOE * EXPERT,
     61 * ATTN + DENSE * DENSE_FFN + MOE * EXPERT + MOE * E * H + 2 * V * H * 2),
    # PP2 over 2 nodes, EP8 per stage: half of every per-block weight, the embedding or the head (BF16)
    ("PP2-EP8", 2, {"pipeline_stages": 2}, E / 8 * MOE * EXPERT / 2,
     (61 * ATTN + DENSE * DENSE_FFN + MOE * EXPERT + MOE * E * H) / 2 + V * H * 2),
])
def test_deepseek_v3_memory_per_gpu_by_hand(layout, nodes, workload, experts, other):
    s = v3(nodes, **workload)
    p = s.workload.pipeline_stages
    mem = memory_per_gpu(stage_scenario(s), stages=p)
    assert mem["expert_weights_bytes"] == pytest.approx(experts, rel=1e-9), layout
    assert mem["other_weights_bytes"] == pytest.approx(other, rel=2e-3), layout  # norms are left out here


def test_a_sweep_point_with_a_pipeline_reports_the_step_and_bubble():
    from moesim.studies.sweep.run import simulate_point
    row = simulate_point((pp(), "k", {}))
    doc = run_pipeline(pp()).doc
    assert row["iteration_time_s"] == pytest.approx(doc["time_s"])
    assert row["bubble_fraction"] == pytest.approx(doc["pipeline"]["bubble_fraction"])
    assert row["pipeline_stages"] == 2 and "error" not in row


def test_interleaved_schedule_shrinks_the_bubble_v_fold_by_hand():
    """Equal chunks, free transfers: (m·v + p − 1)(f + b)/v, the bubble (p − 1)/(m·v + p − 1) (Narayanan et al.
    2021, §2.2.2); v = 1 is 1F1B's (m + p − 1)(f + b)."""
    from moesim.pipeline.schedule import interleaved
    for p, v, m in ((2, 2, 4), (4, 2, 8), (2, 4, 4), (4, 1, 8), (8, 3, 16)):
        tl = simulate_pipeline(np.full(p, 1.0), np.full(p, 2.0), m, chunks=v)
        assert abs(tl.step_s - (m * v + p - 1) * 3.0 / v) < 1e-9, (p, v, m)
        assert abs(tl.bubble() - (p - 1) / (m * v + p - 1)) < 1e-9
    for s in range(4):  # every stage runs each micro-batch's forward and backward once per chunk
        ops = interleaved(s, 4, 8, 3)
        assert sorted((o.kind, o.micro_batch, o.chunk) for o in ops) == sorted(
            (k, i, c) for k in "FB" for i in range(8) for c in range(3))


def test_virtual_stages_run_through_the_cli_and_bad_ones_are_refused(tmp_path):
    from click.testing import CliRunner

    from moesim.cli.main import main
    path = "scenarios/deepseek-v3-train-pp4-h800.yaml"
    one = CliRunner().invoke(main, ["run", path, "--json"])
    two = CliRunner().invoke(main, ["run", path, "--json", "--set", "workload.pipeline_virtual_stages=2"])
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert b["pipeline"]["schedule"] == "interleaved 1F1B (2 chunks)" and b["time_s"] < a["time_s"]
    assert b["pipeline"]["bubble_fraction_equal_stages"] == 3 / (8 * 2 + 3)
    bad = CliRunner().invoke(main, ["run", path, "--set", "workload.pipeline_virtual_stages=3",
                                    "--set", "workload.accumulation_steps=6"])
    assert bad.exit_code == 2 and "workload.pipeline_virtual_stages" in bad.output
