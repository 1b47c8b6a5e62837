"""Conservation of token copies and bytes; hierarchical vs flat; topology paths vs the graph."""

import networkx as nx
import numpy as np
import pytest

from moesim import api
from moesim.hw.topology import build_topology
from moesim.iteration.build import build
from moesim.iteration.scenario import scenario_from_dict


def test_paths_follow_the_graph(small_v3):
    small_v3["cluster"].update(nodes=4, inter_node={"nodes_per_leaf": 2})
    topo = build_topology(scenario_from_dict(small_v3).cluster)
    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, 32, 200), rng.integers(0, 32, 200)
    for a, b, p in zip(src, dst, topo.paths(src, dst)):
        if a == b:
            continue
        hops = nx.shortest_path(topo.graph, f"gpu{a}", f"gpu{b}", weight="route_cost")
        links = [topo.graph.edges[u, v]["link"] for u, v in zip(hops, hops[1:])]
        assert [x for x in links if x >= 0] == [x for x in p if x >= 0]


@pytest.mark.parametrize("algorithm", ["flat", "hierarchical"])
@pytest.mark.parametrize("capacity", [None, 0.8])
def test_copies_and_bytes_are_conserved(small_v3, algorithm, capacity):
    small_v3["comm"]["algorithm"] = algorithm
    small_v3["router"]["capacity_factor"] = capacity
    b = build(scenario_from_dict(small_v3))
    tokens = 16 * 256 * 8
    for st in b.stats:
        assert st.copies + st.dropped == pytest.approx(tokens)
        assert st.gpu_tokens.sum() == pytest.approx(st.copies)
        assert st.sent_bytes.sum() == pytest.approx(st.received_bytes.sum())
        assert (st.dropped > 0) == (capacity is not None)


def test_hierarchical_sends_fewer_network_bytes_than_flat(small_v3):
    def inter(alg):
        small_v3["comm"]["algorithm"] = alg
        return sum(s.inter_node_bytes for s in build(scenario_from_dict(small_v3)).stats)

    assert inter("hierarchical") < inter("flat")


def test_network_copies_equal_distinct_remote_nodes(small_v3):
    """Hierarchical dispatch sends exactly one network copy per (token, remote node)."""
    s = scenario_from_dict(small_v3)
    b = build(s)
    st, work = b.stats[0], b.pieces[0]
    node = b.topology.node_of
    remote = node(work.dispatch.src) != node(work.dispatch.dst)
    copy = 7168 + 4 * 56  # fp8 + one fp32 scale per 128 elements
    net_copies = work.dispatch.nbytes[remote].sum() / copy
    # each token reaches distinct_nodes_per_token nodes, one of which may be its own
    assert net_copies <= st.distinct_nodes_mean * 16 * 256
    assert net_copies > 0


def test_same_seed_same_bytes_and_new_seed_differs(small_v3):
    from moesim.util.files import to_json

    one = to_json(api.run_scenario(scenario_from_dict(small_v3)).doc)
    two = to_json(api.run_scenario(scenario_from_dict(small_v3)).doc)
    small_v3["seed"] = 6
    three = to_json(api.run_scenario(scenario_from_dict(small_v3)).doc)
    assert one == two and one != three


def _two_by_two():
    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 4},
           "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 2}}
    return build_topology(scenario_from_dict(raw).cluster)


def test_low_latency_sends_one_rdma_copy_per_token_expert_and_forwards_nothing():
    """One token on GPU 0 (node 0) chose three experts: two on GPU 2 and one on GPU 3 (node 1), and one on
    GPU 1 (its own node). FP8 copy of hidden 7168: 7168 + 4·56 = 7392 bytes. Low latency: 3 RDMA copies
    (2 → GPU 2, 1 → GPU 3) and 1 NVLink copy to GPU 1. Hierarchical: 1 RDMA copy to GPU 2 (same local
    rank), 1 NVLink forward 2 → 3, 1 NVLink copy to GPU 1."""
    from moesim.comm.traffic import layer_traffic
    from moesim.model.moe import copy_bytes
    topo, c = _two_by_two(), copy_bytes(7168, "fp8")
    assert c == 7392
    dst = np.array([[2, 2, 3, 1]])
    slot = np.array([[4, 5, 6, 2]])  # 2 slots per GPU
    keep = np.ones(dst.shape, bool)
    ll = layer_traffic(np.array([0]), dst, keep, slot, 8, topo, "low_latency", c, 2 * 7168)
    pairs = {(int(s), int(d)): float(b) for s, d, b in zip(ll.dispatch.src, ll.dispatch.dst, ll.dispatch.nbytes)}
    assert pairs == {(0, 2): 2 * c, (0, 3): c, (0, 1): c}
    back = {(int(s), int(d)): float(b) for s, d, b in zip(ll.combine.src, ll.combine.dst, ll.combine.nbytes)}
    assert back == {(2, 0): 2 * 2 * 7168, (3, 0): 2 * 7168, (1, 0): 2 * 7168}  # BF16, reduced at the source
    hier = layer_traffic(np.array([0]), dst, keep, slot, 8, topo, "hierarchical", c, 2 * 7168)
    pairs = {(int(s), int(d)): float(b) for s, d, b in zip(hier.dispatch.src, hier.dispatch.dst, hier.dispatch.nbytes)}
    assert pairs == {(0, 2): c, (2, 3): c, (0, 1): c}


def test_auto_algorithm_picks_low_latency_for_decode_and_its_defaults():
    from moesim.ir.resolve import resolve
    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 4},
           "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8}}
    decode = resolve(scenario_from_dict({**raw, "workload": {"mode": "decode", "tokens_per_gpu": 64}}))
    prefill = resolve(scenario_from_dict({**raw, "workload": {"mode": "prefill"}}))
    assert (decode.algorithm, decode.sm_share) == ("low_latency", 0.0)
    assert decode.links.dispatch_latency_s == decode.links.collective_latency_s  # no layout exchange
    assert prefill.algorithm == "hierarchical" and prefill.sm_share == pytest.approx(24 / 132)
    assert prefill.links.dispatch_latency_s == 2 * prefill.links.collective_latency_s
    assert "estimated" in prefill.sm_share_source
    mine = resolve(scenario_from_dict({**raw, "comm": {"algorithm": "flat", "sm_share": 0.1}}))
    assert (mine.algorithm, mine.sm_share, mine.sm_share_source) == ("flat", 0.1, "scenario")


def test_a_measured_kernel_start_up_replaces_the_collective_latency():
    """cluster.gpu.a2a_startup [dispatch, combine] per algorithm (silicon profiles fit it from DeepEP's
    kernels) overrides collective_latency (doubled for a dispatch with a layout exchange)."""
    from moesim.config import catalog
    from moesim.ir.resolve import resolve
    gpu = {k: v["value"] if isinstance(v, dict) else v for k, v in catalog.gpu_entry("h100").items()}
    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 4},
           "cluster": {"gpu": {**gpu, "a2a_startup": {"hierarchical": [30e-6, 50e-6]}}, "nodes": 2,
                       "gpus_per_node": 8}}
    lk = resolve(scenario_from_dict(raw)).links
    assert (lk.dispatch_latency_s, lk.combine_latency_s) == (30e-6, 50e-6)
    ll = resolve(scenario_from_dict({**raw, "comm": {"algorithm": "low_latency"}})).links
    assert (ll.dispatch_latency_s, ll.combine_latency_s) == (gpu["collective_latency"],) * 2  # none measured


def test_the_nvlink_rate_an_all_to_all_reaches_scales_only_its_own_stages():
    from moesim.config import catalog
    from moesim.ir.resolve import resolve
    gpu = {k: v["value"] if isinstance(v, dict) else v for k, v in catalog.gpu_entry("h100").items()}
    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 4},
           "cluster": {"gpu": {**gpu, "a2a_nvlink_bandwidth": {"hierarchical": 185e9}}, "nodes": 1,
                       "gpus_per_node": 8}}
    assert resolve(scenario_from_dict(raw)).links.a2a_nvlink_scale == pytest.approx(370e9 / 185e9)
    flat = resolve(scenario_from_dict({**raw, "comm": {"algorithm": "flat"}})).links
    assert flat.a2a_nvlink_scale == 1.0  # none measured for flat
    override = {**raw, "cluster": {**raw["cluster"], "intra_node": {"bandwidth": 100e9}}}
    assert resolve(scenario_from_dict(override)).links.a2a_nvlink_scale == 1.0  # the scenario's figure wins


def test_compiled_unique_per_row_gives_the_numpy_result(monkeypatch):
    from moesim.comm import traffic

    if traffic._unique_rows_jit is None:
        pytest.skip("numba is not installed (pip install 'moesim[fast]')")
    x = np.random.default_rng(0).integers(-1, 12, (500, 8))
    fast = traffic._unique_per_row(x)
    monkeypatch.setattr(traffic, "_unique_rows_jit", None)
    assert np.array_equal(fast, traffic._unique_per_row(x))


def test_compiled_hierarchical_counts_give_the_numpy_pairs():
    from moesim.comm import hierarchical, pairs, traffic

    if hierarchical._hier_counts_jit is None:
        pytest.skip("numba is not installed (pip install 'moesim[fast]')")
    rng = np.random.default_rng(2)
    g, gpn, n, k = 32, 8, 3000, 8
    src = np.repeat(np.arange(g), n // g + 1)[:n]
    dst = np.where(rng.random((n, k)) < 0.1, -1, rng.integers(0, g, (n, k)))
    ug = traffic._unique_per_row(dst)
    un = traffic._unique_per_row(np.where(dst >= 0, dst // gpn, -1))
    counts = hierarchical._hier_counts_jit(src, ug, un, g, gpn)
    fast = [pairs.from_counts(c, g, 2.5) for c in counts]
    slow = hierarchical._hier_pairs(src, ug, un, g, gpn, 2.5)
    for a, b in zip(fast, slow):
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and np.array_equal(x, y)
