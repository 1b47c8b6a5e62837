"""Where the time goes: in every mode the critical path's named stage times plus waiting add up to the
iteration, each micro-batch's rows to its own end, each GPU's row to its finish time."""

import numpy as np
import pytest

from moesim import api
from moesim.iteration.scenario import scenario_from_dict

BASE = {"seed": 2, "model": {"base": "deepseek-v3", "num_hidden_layers": 5},
        "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 4},
        "router": {"stats": {"kind": "power_law", "alpha": 1.01}},
        "workload": {"tokens_per_gpu": 128, "context_tokens": 1024}}

MODES = {
    "moe_layers": {"workload": {"scope": "moe_layers"}},
    "whole_model": {},
    "decode": {"workload": {"mode": "decode"}},
    "two_micro_batches": {"workload": {"micro_batches": 2}},
    "training": {"workload": {"mode": "training"}, "placement": {"redundant_experts": 8}},
    "accumulation": {"workload": {"mode": "training", "accumulation_steps": 2}},
    "overlap_shared": {"comm": {"overlap_shared_experts": True, "sm_share": 0.2}},
    "tbo_sm_share": {"workload": {"micro_batches": 2}, "comm": {"sm_share": 0.15}},
    "attention_tp": {"workload": {"attention_tp": 2}},
    "drain": {"sim": {"network": "drain"}},
    "flat": {"comm": {"algorithm": "flat"}},
}


def _run(mode):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in MODES[mode].items():
        raw[key] = {**raw.get(key, {}), **value}
    return api.run_scenario(scenario_from_dict(raw)).doc


@pytest.mark.parametrize("mode", sorted(MODES))
def test_stages_plus_waiting_sum_to_the_iteration(mode):
    doc = _run(mode)
    it, tot = doc["iteration_time_s"], doc["totals"]
    assert sum(tot["stages"].values()) + tot["waiting_s"] == pytest.approx(it, rel=1e-9)
    assert all(v >= 0 for v in tot["stages"].values()) and tot["waiting_s"] >= -1e-12
    for t in doc["micro_batches"]:
        rows = [r for r in doc["layers"] if r["micro_batch"] == t["micro_batch"]]
        assert sum(r["time_s"] for r in rows) == pytest.approx(t["end_s"], rel=1e-9)
        assert sum(t["stages"].values()) + t["waiting_s"] == pytest.approx(t["end_s"], rel=1e-9)
        for r in rows:
            stages = sum(r[f"{n}_s"] for n in doc["stage_names"])
            assert stages + r["waiting_s"] == pytest.approx(r["time_s"], rel=1e-9, abs=1e-15)
    assert max(t["end_s"] for t in doc["micro_batches"]) == pytest.approx(it, rel=1e-12)
    for g in doc["gpus"]:
        busy = sum(g[f"{n}_s"] for n in doc["stage_names"])
        assert busy + g["waiting_s"] == pytest.approx(g["finish_s"], rel=1e-9)


def test_two_micro_batches_report_each_timeline_and_hide_communication():
    one, two = _run("whole_model"), _run("two_micro_batches")
    assert [t["micro_batch"] for t in two["micro_batches"]] == [0, 1]
    assert len(two["layers"]) == 2 * len(one["layers"])
    # overlap: the critical path exposes less all-to-all than one batch of all the tokens does
    exposed = lambda d: d["totals"]["stages"].get("dispatch", 0) + d["totals"]["stages"].get("combine", 0)  # noqa: E731
    assert exposed(two) < exposed(one)


def own_transfer_s(flows, topo):
    """Per GPU [G]: the time its busiest own link (NVLink up/down, its NIC up/down) needs for the stage's
    bytes at full speed: a lower bound on its time in the stage."""
    paths = topo.paths(flows.src, flows.dst)
    valid = paths >= 0
    load = np.bincount(paths[valid], weights=np.broadcast_to(flows.nbytes[:, None], paths.shape)[valid],
                       minlength=topo.capacity_Bps.size)
    t = load / topo.capacity_Bps
    g, nn = topo.num_gpus, topo.nodes * topo.nics_per_node
    gpus = np.arange(g)
    nic = topo.nic_of(gpus)
    return np.max([t[gpus], t[g + gpus], t[2 * g + nic], t[2 * g + nn + nic]], axis=0)


def test_dispatch_is_a_simulated_duration_not_a_lower_bound():
    """A layer's dispatch on the critical path is at least the time its own bytes need at full speed."""
    res = api.run_scenario(scenario_from_dict({**BASE, "workload": {**BASE["workload"], "scope": "moe_layers"}}))
    for row, pc in zip(res.doc["layers"], res.built.pieces):
        c = row["critical_gpu"]
        assert row["dispatch_s"] + 1e-12 >= own_transfer_s(pc.dispatch, res.built.topology)[c]
