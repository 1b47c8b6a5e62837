"""Engine tests in SimPy's style: tiny programs whose event times are computed by hand."""

import numpy as np
import pytest
import simpy

from moesim.engine import simulate
from moesim.engine.drain import drain_batch, drain_batches
from moesim.engine.fluid import FluidNetwork, maxmin_rates
from moesim.engine.records import END, ENTER, START
from moesim.hw.flows import FlowSet
from moesim.hw.topology import build_topology
from moesim.ir.program import Comm, Compute, Parallel, Program
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


def test_drain_batches_queue_first_come_first_served():
    # 100 B at t=0 on an idle 100 B/s link: done at 1.0. A batch of 100 B at t=0.5 waits behind it: 2.0
    free = np.zeros(1)
    cap, lat = np.array([100.0]), np.array([0.0])
    assert drain_batch(np.array([[0]]), np.array([100.0]), 0.0, cap, lat, free) == pytest.approx([1.0])
    assert drain_batch(np.array([[0]]), np.array([100.0]), 0.5, cap, lat, free) == pytest.approx([2.0])
    # one batch of two flows finishes together when the link has drained both
    assert drain_batch(np.array([[0], [0]]), np.array([50.0, 150.0]), 5.0, cap, lat, free) == pytest.approx([7.0, 7.0])


def prog(*stages, layer=0):
    return Program(tuple(stages), layer=layer, block=layer)


def comp(name, *seconds):
    return Compute(name, np.array(seconds, dtype=float))


def p2p(src, dst, nbytes):
    return FlowSet.point_to_point(np.array(src), np.array(dst), np.array(nbytes, dtype=float))


def toy(gpus=2):
    return build_topology(toy_scenario(cluster={"gpus_per_node": gpus}).cluster)


def test_sequence_of_compute_stages_runs_back_to_back():
    rec = simulate([[prog(comp("a", 1.0, 2.0), comp("b", 0.5, 0.5), comp("c", 3.0, 0.0))]], toy())
    assert rec.stage(0, "b")[:, START] == pytest.approx([1.0, 2.0])
    assert rec.stage(0, "c")[:, END] == pytest.approx([4.5, 2.5])
    assert rec.iteration_time_s == pytest.approx(4.5)


@pytest.mark.parametrize("exact", [True, False])
def test_two_gpus_layer_times_by_hand(exact):
    """GPU0 sends 100 B to GPU1, GPU1 sends 300 B to GPU0 (NVLink 100 B/s per direction)."""
    dispatch = p2p([0, 1], [1, 0], [100.0, 300.0])
    combine = p2p([1, 0], [0, 1], [100.0, 300.0])
    p = prog(comp("router", 1.0, 1.0), Comm("dispatch", dispatch), comp("routed_experts", 2.0, 5.0),
             Comm("combine", combine), comp("unpermute", 0.5, 0.5))
    rec = simulate([[p]], toy(), exact=exact)
    # dispatch: 100 B -> 1 s, 300 B -> 3 s on their own links; both GPUs wait for the 300 B flow: 4 s
    assert rec.stage(0, "dispatch")[:, END] == pytest.approx([4.0, 4.0])
    # experts: GPU0 done at 6, GPU1 at 9. Combine: GPU0 sends 300 B from 6 (ends 9); GPU1 sends 100 B from 9
    # (ends 10). GPU0 needs GPU1's data: 10; GPU1 waits for its own send: 10.
    c = rec.stage(0, "combine")
    assert c[:, END] == pytest.approx([10.0, 10.0])
    # GPU0 joined at 6 but its partner was ready only at 9: 3 s of waiting, then data moves
    assert c[:, ENTER] == pytest.approx([6.0, 9.0]) and c[:, START] == pytest.approx([9.0, 9.0])
    assert rec.iteration_time_s == pytest.approx(10.5)


@pytest.mark.parametrize("exact", [True, False])
def test_hot_gpu_delays_only_its_partners(exact):
    """Pairs (0,1) and (2,3) exchange 100 B each way over 100 B/s links; GPU3 computes 7 s. Both network
    models keep the partial order: GPU0 and GPU1 leave combine at 2 s, GPU2 and GPU3 at 9 s."""
    flows = p2p([0, 2], [1, 3], [100.0, 100.0])
    back = p2p([1, 3], [0, 2], [100.0, 100.0])
    p = prog(Comm("dispatch", flows), comp("routed_experts", 0.0, 0.0, 0.0, 7.0), Comm("combine", back))
    rec = simulate([[p]], toy(4), exact=exact)
    assert rec.stage(0, "combine")[:, END] == pytest.approx([2.0, 2.0, 9.0, 9.0])


def test_parallel_branch_ends_when_both_branches_have():
    """Dispatch D = 1 MB / 1 MB/s... on the toy: 100 B over 100 B/s = 1 s; shared experts S beside it."""
    for shared, expect in ((0.5, 1.0), (3.0, 3.0)):
        p = prog(Parallel(((Comm("dispatch", p2p([0, 1], [1, 0], [100.0, 100.0])),),
                           (comp("shared_experts", shared, shared),))), comp("routed_experts", 1.0, 1.0))
        rec = simulate([[p]], toy())
        assert rec.stage(0, "routed_experts")[:, START] == pytest.approx([expect, expect])
        assert rec.stage(0, "shared_experts")[:, END] == pytest.approx([shared, shared])


def _tbo_program(scale):
    """Per GPU: router 1 s, dispatch 1 s (100 B at 100 B/s each way), experts 1 s, combine 1 s (× scale)."""
    return prog(comp("router", scale, scale), Comm("dispatch", p2p([0, 1], [1, 0], [100.0 * scale] * 2)),
                comp("routed_experts", scale, scale), Comm("combine", p2p([1, 0], [0, 1], [100.0 * scale] * 2)))


@pytest.mark.parametrize("exact", [True, False])
def test_two_programs_share_a_gpu(exact):
    """Interleaved on one compute unit: A route [0,1], A dispatch [1,2] while B routes [1,2], A experts
    [2,3] while B dispatches, A combine [3,4] while B computes, B combine [4,5]: 5 s. One batch of twice the
    tokens takes 2 + 2 + 2 + 2 = 8 s."""
    rec = simulate([[_tbo_program(1)], [_tbo_program(1)]], toy(), exact=exact)
    assert rec.times[0, 0, :, -1, END] == pytest.approx([4.0, 4.0])
    assert rec.times[1, 0, :, -1, END] == pytest.approx([5.0, 5.0])
    # B reached its router at 0 but got the GPU at 1: queued for the resource
    r = rec.times[1, 0, :, 0]
    assert r[:, ENTER] == pytest.approx([0.0, 0.0]) and r[:, START] == pytest.approx([1.0, 1.0])
    assert simulate([[_tbo_program(2)]], toy(), exact=exact).iteration_time_s == pytest.approx(8.0)


def test_communication_holding_sms_slows_the_compute_beside_it():
    """Dispatch (1 s on the wire) holds half the SMs while in flight; the 1 s of compute beside it runs at
    half speed until 1 s (0.5 s of work done), then the rest at full speed: it ends at 1.5 s."""
    for share, expect in ((0.0, 1.0), (0.5, 1.5)):
        p = prog(Parallel(((Comm("dispatch", p2p([0, 1], [1, 0], [100.0, 100.0]), sm_share=share),),
                           (comp("shared_experts", 1.0, 1.0),))))
        rec = simulate([[p]], toy())
        assert rec.stage(0, "shared_experts")[:, END] == pytest.approx([expect, expect])
        assert rec.stage(0, "dispatch")[:, END] == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("exact", [True, False])
def test_collective_start_up_latency_is_added_to_the_transfer(exact):
    """Each GPU pays the start-up before its data moves (100 B/s links, no path latency): GPU 0 joins at 0,
    sends 100 B from 0.25 to 1.25; GPU 1 joins at 1 after its compute, sends 50 B from 1.25 to 1.75. Both
    wait for both flows: they leave at 1.75 (a floor would have given max(1 + 0.25, 1.5) = 1.5)."""
    p = prog(comp("a", 0.0, 1.0), Comm("dispatch", p2p([0, 1], [1, 0], [100.0, 50.0]), latency_s=0.25))
    rec = simulate([[p]], toy(), exact=exact)
    assert rec.stage(0, "dispatch")[:, END] == pytest.approx([1.75, 1.75])
    lone = prog(Comm("tp_allreduce", p2p([0, 1], [1, 0], [1.0, 1.0]), latency_s=0.25))
    assert simulate([[lone]], toy(), exact=exact).iteration_time_s == pytest.approx(0.25 + 1.0 / 100)


def test_programs_run_in_order_and_records_name_every_stage():
    a = prog(comp("attention", 1.0, 1.0), Comm("dispatch", p2p([0], [1], [100.0])), layer=0)
    b = prog(comp("router", 0.5, 0.25), layer=1)
    rec = simulate([[a, b]], toy())
    assert rec.names == (("attention", "dispatch"), ("router",))
    assert rec.kinds == (("compute", "comm"), ("compute",))
    assert rec.stage(1, "router")[:, END] == pytest.approx([2.5, 2.25])
    assert np.isnan(rec.times[0, 1, :, 1]).all()  # program 1 has one stage


def test_drain_resolves_many_batches_in_one_pass_like_one_at_a_time():
    rng = np.random.default_rng(0)
    paths = rng.integers(-1, 6, size=(40, 3))
    nbytes, release = rng.uniform(1, 100, 40), np.round(rng.uniform(0, 5, 40), 1)
    cap, lat = rng.uniform(10, 50, 6), rng.uniform(0, 0.1, 6)
    free_a, free_b = np.zeros(6), np.zeros(6)
    together = drain_batches(paths, nbytes, release, cap, lat, free_a)
    one_by_one = np.zeros(40)
    for t in np.unique(release):
        sel = release == t
        one_by_one[sel] = drain_batch(paths[sel], nbytes[sel], t, cap, lat, free_b)
    assert together == pytest.approx(one_by_one, rel=1e-12)
    assert free_a == pytest.approx(free_b, rel=1e-12)


def test_training_backward_then_gradient_sync_by_hand():
    """Toy 2 GPUs, NVLink 100 B/s, no latency. Forward: router 1, dispatch 100 B each way 1, experts 2,
    combine 1, unpermute 0.5 = 5.5 s. Backward (2x compute, all-to-alls reversed, same bytes as BF16
    gradients of a BF16 wire): unpermute 1, dispatch 1, experts 4, combine 1, router 2 = 9 s. Then the
    gradient all-reduce: 200 B each way = 2 s. Iteration 16.5 s."""
    from moesim.ir.programs import LayerPieces, training_programs
    from moesim.ir.resolve import resolve

    r = resolve(toy_scenario(workload={"mode": "training"}))
    one = np.ones(2)
    pc = LayerPieces(0, 0, {}, {"router": one, "routed_experts": 2 * one, "unpermute": 0.5 * one}, {},
                     p2p([0, 1], [1, 0], [100.0, 100.0]), p2p([1, 0], [0, 1], [100.0, 100.0]))
    sync = [Comm("gradient_sync", p2p([0, 1], [1, 0], [200.0, 200.0]))]
    progs = training_programs([pc], r, sync)
    assert [p.pass_ for p in progs] == ["forward", "backward"]
    assert progs[1].names == ("bwd_unpermute", "bwd_dispatch", "bwd_routed_experts", "bwd_combine", "bwd_router",
                              "gradient_sync")
    rec = simulate([progs], toy())
    assert rec.program_end()[0, 0] == pytest.approx([5.5, 5.5])
    assert rec.stage(1, "bwd_router")[:, END] == pytest.approx([14.5, 14.5])
    assert rec.iteration_time_s == pytest.approx(16.5)


@pytest.mark.parametrize("exact", [True, False])
def test_partial_order_holds_when_partners_join_at_different_times(exact):
    """GPU0 ⇄ GPU1 and GPU2 ⇄ GPU3 (100 B each way, 1 s), but GPU1 computes 3 s and GPU3 6 s first. Each
    pair leaves when its own slower member's data has moved: 4 s and 7 s; nobody waits for the other pair."""
    flows = p2p([0, 1, 2, 3], [1, 0, 3, 2], [100.0] * 4)
    p = prog(comp("routed_experts", 0.0, 3.0, 0.0, 6.0), Comm("combine", flows))
    rec = simulate([[p]], toy(4), exact=exact)
    assert rec.stage(0, "combine")[:, END] == pytest.approx([4.0, 4.0, 7.0, 7.0])
    assert rec.stage(0, "combine")[:, START] == pytest.approx([3.0, 3.0, 6.0, 6.0])


def test_sparse_drain_scan_equals_the_dense_one():
    """Many links, many batches, few loaded cells: the sparse scan runs; it must give the dense result."""
    import moesim.engine.drain as drain

    rng = np.random.default_rng(3)
    n_links, flows = 400, 300
    paths = np.full((flows, 4), -1)
    paths[:, :2] = rng.integers(0, n_links, size=(flows, 2))
    nbytes, release = rng.uniform(1, 100, flows), np.round(rng.uniform(0, 50, flows), 1)
    cap, lat = rng.uniform(10, 50, n_links), rng.uniform(0, 0.1, n_links)
    free_s, free_d = rng.uniform(0, 5, n_links), None
    free_d = free_s.copy()
    sparse = drain_batches(paths, nbytes, release, cap, lat, free_s)
    times, batch_of = np.unique(release, return_inverse=True)
    assert np.unique(paths[paths >= 0]).size * times.size > 4 * paths.size  # the sparse path was taken
    one_by_one = np.zeros(flows)
    for t in times:
        sel = release == t
        one_by_one[sel] = drain.drain_batch(paths[sel], nbytes[sel], t, cap, lat, free_d)
    assert sparse == pytest.approx(one_by_one, rel=1e-12)
    touched = np.unique(paths[paths >= 0])
    assert (free_s[touched] >= free_d[touched] - 1e-9).all()  # (a free time may be advanced to the last batch)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("chunks", [1, 4])
def test_relay_forwards_a_chunk_only_after_it_has_arrived(exact, chunks):
    """2 nodes x 2 GPUs, NICs 50 B/s, NVLink 100 B/s, no latency. One token on GPU 0 chose experts on GPUs
    2 and 3 (node 1): 100 B cross to relay 2 (same local rank) in C chunks sent one after another, chunk c
    arriving at 2(c+1)/C s; relay 2 forwards chunk c to GPU 3 (1/C s on NVLink) once it has arrived. GPU 3
    is done at 2 + 1/C (C = 1: store and forward, 3 s; perfect cut-through would say 2 s)."""
    from moesim.comm.traffic import layer_traffic
    topo = build_topology(toy_scenario(cluster={"gpus_per_node": 2, "nodes": 2}).cluster)
    dst, slot = np.array([[2, 3]]), np.array([[2, 3]])
    tr = layer_traffic(np.array([0]), dst, np.ones(dst.shape, bool), slot, 4, topo, "hierarchical", 100, 100,
                       chunks=chunks)
    rec = simulate([[prog(Comm("dispatch", tr.dispatch))]], topo, exact=exact)
    assert rec.stage(0, "dispatch")[:, END] == pytest.approx([2.0, 0.0, 2 + 1 / chunks, 2 + 1 / chunks])
    back = simulate([[prog(Comm("combine", tr.combine))]], topo, exact=exact)
    # combine: GPU 3's 100 B result reaches relay 2 in chunks arriving at (c+1)/C; relay 2 sends chunk c back
    # over its NIC (2/C s each) once it has arrived and the NIC is free: C = 4 sends at 0.25, 0.75, 1.25,
    # 1.75 and is done at 2.25 = 2 + 1/C; GPU 3 is done when its last chunk arrives, at 1
    assert back.stage(0, "combine")[:, END] == pytest.approx([2 + 1 / chunks, 0.0, 2 + 1 / chunks, 1.0])


@pytest.mark.parametrize("exact", [True, False])
def test_an_all_to_all_kernel_slower_than_the_link_takes_longer_by_its_nvlink_scale(exact):
    """100 B inside a node over a 100 B/s NVLink: 1 s for a collective at the link figure; 2 s for an
    all-to-all kernel that reaches half of it (nvlink_scale 2). The flows' bytes are not changed."""
    flows = p2p([0], [1], [100.0])
    fast = simulate([[prog(Comm("tp_allreduce", flows))]], toy(), exact=exact)
    slow = simulate([[prog(Comm("dispatch", flows, nvlink_scale=2.0))]], toy(), exact=exact)
    assert fast.iteration_time_s == pytest.approx(1.0) and slow.iteration_time_s == pytest.approx(2.0)
    assert flows.nbytes.tolist() == [100.0]
