"""Engine tests in SimPy's style: tiny processes whose event times are computed by hand."""

import numpy as np
import pytest
import simpy

from moesim.engine import LayerWork, simulate
from moesim.engine.drain import drain_finish_times
from moesim.engine.fluid import FluidNetwork, maxmin_rates
from moesim.engine.records import COMBINED, DISPATCHED, END
from moesim.topology import build_topology
from moesim.traffic import FlowSet
from tests.conftest import toy_scenario


def run_fluid(paths, nbytes, capacity, starts=None, latency=None):
    env = simpy.Environment()
    cap = np.asarray(capacity, dtype=float)
    net = FluidNetwork(env, cap, np.zeros(cap.size) if latency is None else np.asarray(latency, float))
    done = {}

    def starter(i, at):
        yield env.timeout(at)
        net.add(np.array([paths[i]]), np.array([nbytes[i]], float), np.array([i]),
                lambda tok, t: done.update(zip(tok.tolist(), t.tolist())))

    for i in range(len(nbytes)):
        env.process(starter(i, 0.0 if starts is None else starts[i]))
    env.run()
    return [done[i] for i in range(len(nbytes))]


def test_one_flow_takes_bytes_over_bandwidth_plus_latency():
    assert run_fluid([[0, -1]], [300.0], [100.0], latency=[0.5]) == pytest.approx([3.5])


def test_two_flows_share_one_link_then_the_survivor_speeds_up():
    # both at 50 B/s until the 100-byte flow ends at t=2; the other's last 200 bytes go at 100 B/s: t=4
    assert run_fluid([[0, -1], [0, -1]], [100.0, 300.0], [100.0]) == pytest.approx([2.0, 4.0])


def test_late_arrival_reshares_bandwidth():
    # A alone for 1 s (100 B), then both at 50 B/s: A's last 100 B end at t=3;
    # B has sent 100 B by t=3, its last 100 B go at 100 B/s: t=4
    assert run_fluid([[0, -1], [0, -1]], [200.0, 200.0], [100.0], starts=[0.0, 1.0]) == pytest.approx([3.0, 4.0])


def test_maxmin_gives_leftover_to_unconstrained_flows():
    rates = maxmin_rates(np.array([[0, -1], [0, 1], [1, -1], [1, -1]]), np.array([10.0, 30.0]))
    assert rates == pytest.approx([5.0, 5.0, 12.5, 12.5])


def test_drain_model_matches_a_single_link_queue():
    # 100 B at t=0 and 100 B at t=0.5 over 100 B/s: the link is busy until 2.0
    fin = drain_finish_times(np.array([[0], [0]]), np.array([100.0, 100.0]), np.array([0.0, 0.5]),
                             np.array([100.0]), np.array([0.0]))
    assert fin == pytest.approx([2.0, 2.0])


def two_gpu_work(expert_s):
    """GPU0 sends 100 B to GPU1, GPU1 sends 300 B to GPU0 (NVLink 100 B/s per direction)."""
    flows = FlowSet(np.array([0, 1]), np.array([1, 0]), np.array([100.0, 300.0]), np.array([0, 1]),
                    np.array([-1, -1]))
    back = FlowSet(np.array([1, 0]), np.array([0, 1]), np.array([100.0, 300.0]), np.array([1, 0]),
                   np.array([-1, -1]))
    one = np.ones(2)
    return [LayerWork(one * 1.0, np.asarray(expert_s, float), one * 0.5, flows, back)]


@pytest.mark.parametrize("exact", [True, False])
def test_two_gpus_layer_times_by_hand(exact):
    topo = build_topology(toy_scenario().cluster)
    rec = simulate(two_gpu_work([2.0, 5.0]), topo, 0.0, exact=exact)
    t = rec.times[0]
    # route 1 s; dispatch: each direction has its own links, 100 B -> 1 s, 300 B -> 3 s; both GPUs wait for
    # the 300 B flow (GPU1 sends it, GPU0 receives it): dispatched at 4 s
    assert t[:, DISPATCHED] == pytest.approx([4.0, 4.0])
    # experts: GPU0 done at 6, GPU1 at 9. Combine: GPU1 sends 100 B from 9 (ends 10); GPU0 sends 300 B from 6
    # (ends 9). GPU0 needs GPU1's data: 10; GPU1 needs GPU0's: 9 but cannot leave before it joins at 9 ->
    # its own 100 B send ends at 10.
    assert t[:, COMBINED] == pytest.approx([10.0, 10.0])
    assert t[:, END] == pytest.approx([10.5, 10.5])
    assert rec.iteration_time_s == pytest.approx(10.5)


def test_hot_gpu_delays_only_its_partners():
    topo = build_topology(toy_scenario(cluster={"gpus_per_node": 4}).cluster)
    flows = FlowSet(np.array([0, 2]), np.array([1, 3]), np.array([100.0, 100.0]), np.array([0, 2]),
                    np.array([-1, -1]))
    back = FlowSet(np.array([1, 3]), np.array([0, 2]), np.array([100.0, 100.0]), np.array([1, 3]),
                   np.array([-1, -1]))
    work = [LayerWork(np.zeros(4), np.array([0.0, 0.0, 0.0, 7.0]), np.zeros(4), flows, back)]
    t = simulate(work, topo, 0.0).times[0]
    # dispatch ends at 1 s for all. Combine: GPU1 sends at 1 -> GPU0 has it at 2; GPU3 computes until 8,
    # so GPU2 receives at 9. The hot GPU delays its partner only.
    assert t[:, COMBINED] == pytest.approx([2.0, 2.0, 9.0, 9.0])


def test_shared_experts_overlapped_with_dispatch_hide_behind_it():
    """Each GPU: dispatch takes D; shared experts S run alongside; the GPU may go on at max(D, S)."""
    import numpy as np

    from moesim.config import scenario_from_dict
    from moesim.engine import simulate
    from moesim.engine.records import DISPATCHED, ROUTED, LayerWork
    from moesim.topology import build_topology
    from moesim.traffic import FlowSet

    s = scenario_from_dict({"model": "mixtral-8x7b", "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 2,
                                                                 "intra_node": {"bandwidth": 1e9, "latency": 0}}})
    topo = build_topology(s.cluster)
    flows = FlowSet(np.array([0, 1]), np.array([1, 0]), np.array([1e6, 1e6]), np.array([0, 1]), np.array([-1, -1]))
    empty = FlowSet(*(np.zeros(0, dtype=int),) * 2, np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    for shared, expect in ((0.5e-3, 1e-3), (3e-3, 3e-3)):  # D = 1 MB / 1 GB/s = 1 ms
        w = LayerWork(np.zeros(2), np.zeros(2), np.zeros(2), flows, empty, during_dispatch_s=np.full(2, shared))
        t = simulate([w], topo, 0.0).times[0]
        assert t[:, DISPATCHED] - t[:, ROUTED] == pytest.approx([expect, expect])


def test_two_micro_batches_overlap_compute_with_the_other_ones_all_to_all():
    """Per micro-batch and GPU: route 1 ms, dispatch 1 ms, experts 1 ms, combine 1 ms (1 MB each way at
    1 GB/s). Interleaved on one compute unit: A route [0,1], A dispatch [1,2] while B routes [1,2],
    A experts [2,3] while B dispatches, A combine [3,4] while B computes, B combine [4,5]: 5 ms.
    One batch of twice the tokens takes 2 + 2 + 2 + 2 = 8 ms."""
    from moesim.config import scenario_from_dict
    from moesim.engine import simulate_overlap
    from moesim.engine.records import START
    from moesim.traffic import FlowSet

    s = scenario_from_dict({"model": "mixtral-8x7b", "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 2,
                                                                 "intra_node": {"bandwidth": 1e9, "latency": 0}}})
    topo = build_topology(s.cluster)

    def work(scale):
        flows = FlowSet(np.array([0, 1]), np.array([1, 0]), np.full(2, 1e6 * scale), np.array([0, 1]),
                        np.array([-1, -1]))
        back = FlowSet(np.array([1, 0]), np.array([0, 1]), np.full(2, 1e6 * scale), np.array([1, 0]),
                       np.array([-1, -1]))
        return LayerWork(np.full(2, 1e-3 * scale), np.full(2, 1e-3 * scale), np.zeros(2), flows, back)

    for exact in (True, False):
        a, b = simulate_overlap([[work(1)], [work(1)]], topo, 0.0, exact=exact)
        assert a.times[0, :, END] == pytest.approx([4e-3, 4e-3])
        assert b.times[0, :, END] == pytest.approx([5e-3, 5e-3]) and b.times[0, :, START] == pytest.approx(0.0)
        single = simulate([work(2)], topo, 0.0, exact=exact)
        assert single.times[0, :, END] == pytest.approx([8e-3, 8e-3])
