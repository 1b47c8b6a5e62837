"""The lockstep engine and the closed-form floor: hand-computed times, and agreement with the SimPy
interpreter on the drain network (the same model when phases do not overlap; measured where they do)."""

import numpy as np
import pytest

from moesim import api
from moesim.engine import simulate
from moesim.engine.records import END, ENTER, START
from moesim.ir.program import Comm
from moesim.iteration.scenario import scenario_from_dict
from moesim.util.errors import ScenarioError
from tests.test_engine import comp, p2p, prog, toy


def test_two_gpus_layer_times_by_hand():
    """As test_engine's hand case: dispatch ends at 4 s on both, combine at 10 s, GPU0 waits 6 -> 9."""
    p = prog(comp("router", 1.0, 1.0), Comm("dispatch", p2p([0, 1], [1, 0], [100.0, 300.0])),
             comp("routed_experts", 2.0, 5.0), Comm("combine", p2p([1, 0], [0, 1], [100.0, 300.0])),
             comp("unpermute", 0.5, 0.5))
    rec = simulate([[p]], toy(), exact=False, engine="lockstep")
    assert rec.engine == "lockstep"
    assert rec.stage(0, "dispatch")[:, END] == pytest.approx([4.0, 4.0])
    c = rec.stage(0, "combine")
    assert c[:, END] == pytest.approx([10.0, 10.0])
    assert c[:, ENTER] == pytest.approx([6.0, 9.0]) and c[:, START] == pytest.approx([9.0, 9.0])
    assert rec.iteration_time_s == pytest.approx(10.5)


def test_hot_gpu_delays_only_its_partners_and_start_up_latency_adds():
    p = prog(Comm("dispatch", p2p([0, 2], [1, 3], [100.0, 100.0]), latency_s=0.25),
             comp("routed_experts", 0.0, 0.0, 0.0, 7.0), Comm("combine", p2p([1, 3], [0, 2], [100.0, 100.0])))
    rec = simulate([[p]], toy(4), exact=False, engine="lockstep")
    # dispatch: 0.25 s start-up + 1 s on the wire; combine: GPU3 joins at 8.25, its 100 B take 1 s
    assert rec.stage(0, "dispatch")[:, END] == pytest.approx([1.25] * 4)
    assert rec.stage(0, "combine")[:, END] == pytest.approx([2.25, 2.25, 9.25, 9.25])


def test_bound_is_a_barrier_per_stage_by_hand():
    """Router 1 s / 2 s: 2 s. Dispatch: the busiest link has 300 B at 100 B/s: 3 s. Experts 2 / 5: 5 s."""
    p = prog(comp("router", 1.0, 2.0), Comm("dispatch", p2p([0, 1], [1, 0], [100.0, 300.0])),
             comp("routed_experts", 2.0, 5.0))
    rec = simulate([[p]], toy(), exact=False, engine="bound")
    assert rec.stage(0, "dispatch")[:, ENTER] == pytest.approx([2.0, 2.0])
    assert rec.stage(0, "dispatch")[:, END] == pytest.approx([5.0, 5.0])
    assert rec.stage(0, "routed_experts")[:, END] == pytest.approx([7.0, 10.0])
    assert rec.iteration_time_s == pytest.approx(10.0)


def _v3(**over):
    raw = {"seed": 4, "model": {"base": "deepseek-v3", "num_hidden_layers": 7},
           "cluster": {"gpu": "h800", "nodes": 4, "gpus_per_node": 8},
           "router": {"stats": {"kind": "power_law", "alpha": 1.01}},
           "workload": {"mode": "decode", "tokens_per_gpu": 64, "context_tokens": 2048},
           "sim": {"network": "drain"}}
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v}
    return raw


def _both(raw):
    des = api.run_scenario(scenario_from_dict({**raw, "sim": {**raw["sim"], "engine": "des"}}))
    ls = api.run_scenario(scenario_from_dict({**raw, "sim": {**raw["sim"], "engine": "lockstep"}}))
    return des, ls


def test_lockstep_is_the_interpreter_on_dense_decode():
    des, ls = _both(_v3())
    assert ls.summary.to_dict()["fidelity"]["engine"] == "lockstep"
    assert ls.records.interleaved_phases == 0
    np.testing.assert_allclose(ls.records.times, des.records.times, rtol=1e-12, atol=1e-15)


def test_lockstep_with_chunked_forwarding_stays_within_two_percent():
    des, ls = _both(_v3(workload={"mode": "prefill", "tokens_per_gpu": 512, "context_tokens": 512},
                        comm={"algorithm": "hierarchical", "chunks": 4}))
    assert ls.summary.iteration_time_s == pytest.approx(des.summary.iteration_time_s, rel=0.02)


def test_auto_picks_lockstep_only_where_it_applies():
    one = api.run_scenario(scenario_from_dict(_v3(sim={"network": "drain", "engine": "auto"})))
    two = api.run_scenario(scenario_from_dict(_v3(workload={"micro_batches": 2})))
    assert one.records.engine == "lockstep" and two.records.engine == "des"
    with pytest.raises(ScenarioError, match="sim.engine"):
        scenario_from_dict(_v3(sim={"network": "drain", "engine": "lockstep"}, workload={"micro_batches": 2}))


def test_bound_estimate_is_close_on_dense_decode():
    des, _ = _both(_v3())
    b = api.run_scenario(scenario_from_dict(_v3(sim={"network": "drain", "engine": "bound"})))
    assert b.records.engine == "bound"
    assert b.summary.iteration_time_s == pytest.approx(des.summary.iteration_time_s, rel=0.05)
