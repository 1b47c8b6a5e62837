"""The compiled kernels and their numpy twins give the same results bit for bit (counter-based routing
draws, the drain scans, link paths, one-hop traffic counts, round-robin slots, alias tables, scatter-max),
and the counter-based generator has the laws it claims. Skipped where numba is not installed (the numpy
twins are then the only path)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.engine import drain, drain_jit
from moesim.routing import counter, topdown, topdown_jit
from moesim.routing.params import RoutingParams
from moesim.util import alloc

needs_numba = pytest.mark.skipif(not drain_jit.available(),
                                 reason="numba is not installed (pip install 'moesim[fast]')")


def test_log_in_basic_operations_is_accurate_and_exponentials_have_mean_one():
    u = np.random.default_rng(0).random(200_000) + 1e-300
    assert np.abs(counter.ln_unit(u) - np.log(u)).max() <= 4e-16 * np.abs(np.log(u)).max()
    x = counter.exponential(np.uint64(7), np.arange(400_000, dtype=np.uint64))
    assert x.min() > 0 and np.isfinite(x).all()
    assert abs(x.mean() - 1) < 0.01 and abs(x.var() - 1) < 0.02  # Exp(1): mean 1, variance 1
    assert abs(np.mean(x > 1.0) - np.exp(-1.0)) < 0.003


def test_uniforms_are_uniform_and_streams_differ():
    ctr = np.arange(200_000, dtype=np.uint64)
    a, b = counter.uniform(np.uint64(1), ctr), counter.uniform(np.uint64(2), ctr)
    hist = np.bincount((a * 20).astype(int), minlength=20) / a.size
    assert np.abs(hist - 0.05).max() < 0.003
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01 and abs(np.corrcoef(a[1:], a[:-1])[0, 1]) < 0.01


def _numpy_route(pop, n, rule, seed, chunk=None, monkeypatch=None):
    monkeypatch.setattr(topdown_jit, "available", lambda: False)
    if chunk:
        monkeypatch.setattr(topdown, "_CHUNK", chunk)
    try:
        return topdown.sample_topk(pop, n, rule, np.random.default_rng(seed))
    finally:
        monkeypatch.undo()


def test_counter_draws_make_the_routing_independent_of_the_chunking(monkeypatch):
    rule = RoutingParams(64, 6, 8, 3, "sum_top2", "sigmoid", None)
    pop = np.random.default_rng(1).dirichlet(np.full(64, 0.3))
    whole = _numpy_route(pop, 3000, rule, 5, 8192, monkeypatch)
    assert np.array_equal(whole, _numpy_route(pop, 3000, rule, 5, 7, monkeypatch))


@needs_numba
@pytest.mark.parametrize("rule", [RoutingParams(256, 8, 8, 4, "sum_top2", "sigmoid", None),
                                  RoutingParams(160, 6, 8, 3, "max", "softmax", None),
                                  RoutingParams(64, 8, 1, 1, "max", "softmax", None)])
def test_compiled_router_is_the_numpy_router_on_real_shapes(rule, monkeypatch):
    pop = np.random.default_rng(2).dirichlet(np.full(rule.experts, 0.15))  # hot: rejection and inversion
    fast = topdown.sample_topk(pop, 20_000, rule, np.random.default_rng(3))
    assert np.array_equal(fast, _numpy_route(pop, 20_000, rule, 3, None, monkeypatch))


def _numpy_drain(*args):
    saved = drain_jit.available
    drain_jit.available = lambda: False
    try:
        return drain.drain_batches(*args)
    finally:
        drain_jit.available = saved


@needs_numba
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_compiled_drain_is_the_numpy_drain(seed, many_batches):
    """Dense and sparse phases (many batches, few flows), release-ordered or not: the same finish times and
    link-free times to the last bit."""
    rng = np.random.default_rng(seed)
    links, flows = int(rng.integers(3, 60)), int(rng.integers(1, 200))
    paths = rng.integers(-1, links, size=(flows, 4))
    nbytes = rng.random(flows) * 1e6
    times = np.sort(rng.random(int(rng.integers(1, 300 if many_batches else 4)))) * 1e-3
    batch_of = rng.integers(0, times.size, flows)
    used = np.unique(batch_of)
    times, batch_of = times[used], np.searchsorted(used, batch_of)
    cap, lat = rng.random(links) * 1e11 + 1e9, rng.random(links) * 1e-5
    free_a = rng.random(links) * 1e-4
    free_b = free_a.copy()
    a = drain_jit.drain(paths, nbytes, times[batch_of], batch_of, times, cap, lat, free_a)
    b = _numpy_drain(paths, nbytes, times[batch_of], cap, lat, free_b, batch_of, times)
    assert np.array_equal(a, b) and np.array_equal(free_a, free_b)


@needs_numba
def test_compiled_paths_are_the_numpy_paths():
    from moesim.hw import topology
    from moesim.iteration.scenario import scenario_from_dict
    for nics, nodes in ((8, 6), (2, 40), (1, 3)):
        s = scenario_from_dict({"model": {"base": "mixtral-8x7b"}, "cluster": {
            "gpu": "h100", "nodes": nodes, "gpus_per_node": 8, "inter_node": {"nics_per_node": nics}},
            "placement": {"redundant_experts": nodes * 8 - 8}})
        topo = topology.build_topology(s.cluster)
        rng = np.random.default_rng(nodes)
        src, dst = rng.integers(0, topo.num_gpus, 5000), rng.integers(0, topo.num_gpus, 5000)
        fast = topo.paths(src, dst)
        saved, topology._paths_jit = topology._paths_jit, None
        try:
            assert np.array_equal(fast, topo.paths(src, dst))
        finally:
            topology._paths_jit = saved


@needs_numba
def test_compiled_alias_tables_are_numpys(monkeypatch):
    rng = np.random.default_rng(4)
    for g, size in ((8, 32), (1, 256), (3, 7)):
        p = rng.dirichlet(np.full(g * size, 0.3)).reshape(g, size)
        fast = topdown._alias_tables(p)
        monkeypatch.setattr(topdown_jit, "available", lambda: False)
        slow = topdown._alias_tables(p)
        monkeypatch.undo()
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_maximum_at_is_numpys():
    rng = np.random.default_rng(5)
    a = rng.random(40)
    b = a.copy()
    idx, vals = rng.integers(0, 40, 500), rng.random(500)
    drain_jit.maximum_at(a, idx, vals)
    np.maximum.at(b, idx, vals)
    assert np.array_equal(a, b)


def test_allocator_tuning_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("MOESIM_MALLOC", "default")
    assert alloc.tune() is False
    monkeypatch.delenv("MOESIM_MALLOC")
    assert alloc.tune() in (True, False)  # True on glibc


@needs_numba
@pytest.mark.parametrize("algorithm", ["flat", "low_latency"])
def test_compiled_one_hop_traffic_is_the_numpy_traffic(algorithm, monkeypatch):
    from moesim.comm import flat, traffic
    from moesim.hw.topology import build_topology
    from moesim.iteration.scenario import scenario_from_dict
    s = scenario_from_dict({"model": {"base": "mixtral-8x7b"}, "cluster": {"gpu": "h100", "nodes": 3,
                                                                             "gpus_per_node": 8},
                            "placement": {"redundant_experts": 16}})
    topo = build_topology(s.cluster)
    g, n, k, per_gpu = topo.num_gpus, 700, 8, 2
    rng = np.random.default_rng(4)
    src = np.sort(rng.integers(0, g, n))
    slot = rng.integers(0, g * per_gpu, (n, k))  # repeats: a token sends one copy per (token, expert)
    slot[:40] = slot[:40, :1]  # tokens whose experts all sit on one slot
    dst, live = slot // per_gpu, rng.random((n, k)) > 0.05
    keep = live & (rng.random((n, k)) > 0.2)  # capacity drops
    args = (src, dst, keep, slot, g * per_gpu, topo, algorithm, 7168, 2 * 7168)
    fast = traffic.layer_traffic(*args, scale=3.0, live=live)
    monkeypatch.setattr(flat, "_flat_counts_jit", None)
    slow = traffic.layer_traffic(*args, scale=3.0, live=live)
    for name in ("slot_tokens", "devices_hist", "nodes_hist"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert (fast.copies, fast.dropped, fast.distinct_nodes_mean) == (slow.copies, slow.dropped,
                                                                      slow.distinct_nodes_mean)
    assert fast.dropped > 0 and fast.devices_hist[1] > 0
    for a, b in ((fast.dispatch, slow.dispatch), (fast.combine, slow.combine)):
        for name in ("src", "dst", "nbytes", "gate", "wait_node"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name


@needs_numba
def test_compiled_round_robin_slots_are_numpys(monkeypatch):
    from moesim.placement import base
    rng = np.random.default_rng(5)
    row = np.concatenate([np.arange(64), rng.integers(0, 64, 32)])  # some experts with up to 3+ replicas
    rng.shuffle(row)
    p = base.Placement(np.stack([row, np.roll(row, 7)]), 16)
    ids = rng.integers(0, 64, (3000, 6)).astype(np.int32)
    fast = [p.choose_slots(layer, ids) for layer in (0, 1)]
    monkeypatch.setattr(base, "_round_robin_jit", None)
    slow = [p.choose_slots(layer, ids) for layer in (0, 1)]
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(fast, slow))
    assert len(np.unique(fast[0][ids == row[0]])) == np.sum(row == row[0])  # every replica used
