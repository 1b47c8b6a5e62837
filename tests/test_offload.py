"""Experts across memory tiers: the cache policies by hand, hand-computed fetch- and CPU-bound runs,
monotonicity properties, the shipped examples and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.cli.main import main
from moesim.hw.costs.loader import cost_model
from moesim.ir.resolve import resolve
from moesim.iteration.scenario import scenario_from_dict
from moesim.offload import run_offload
from moesim.offload.cache import ExpertCache
from moesim.offload.steps import reuse
from moesim.offload.tiers import MissCosts, plan_tiers
from moesim.util.errors import ScenarioError

H, F, E, K, LAYERS = 64, 128, 8, 2, 3
EXPERT_BYTES = 3 * H * F * 2  # bf16


def _gpu(**kw):
    """A GPU whose compute is free (huge peaks, no overheads): what is left is the host side."""
    base = {"name": "ideal", "peak_bf16_flops": 1e30, "peak_fp8_flops": 1e30, "hbm_bytes": 1e9,
            "hbm_bandwidth": 1e30, "sms": 1, "nvlink_bandwidth": 1e12, "gemm_efficiency": 1.0,
            "memory_efficiency": 1.0, "kernel_overhead": 0.0, "tile_rows": 1, "collective_latency": 0.0,
            "nic_bandwidth": 1e12, "nic_latency": 0.0, "nvlink_latency": 0.0}
    return {**base, **kw}


def _host(**kw):
    base = {"name": "box", "dram_bytes": 1e12, "dram_bandwidth": 1e30, "host_link_bandwidth": 1e9,
            "host_link_latency": 0.0, "nvme_bytes": 1e13, "nvme_read_bandwidth": 1e8, "nvme_latency": 0.0,
            "cpu_cores": 8, "cpu_flops": 1e30, "cpu_gemm_efficiency": 1.0, "cpu_memory_efficiency": 1.0,
            "cpu_expert_overhead": 0.0}
    return {**base, **kw}


def _scenario(offload=None, gpu=None, host=None, stats=None, tokens=1, gpus=1, mode="decode"):
    raw = {"name": "t", "seed": 5,
           "model": {"name": "toy", "hidden_size": H, "moe_intermediate_size": F, "n_routed_experts": E,
                     "num_experts_per_tok": K, "num_hidden_layers": LAYERS},
           "cluster": {"gpu": _gpu(**(gpu or {})), "nodes": 1, "gpus_per_node": gpus, "host": _host(**(host or {}))},
           "router": {"stats": stats or {"kind": "uniform"}},
           "workload": {"mode": mode, "tokens_per_gpu": tokens, "scope": "moe_layers"},
           "offload": {"steps": 4, **(offload or {})}}
    return scenario_from_dict(raw)


# ---- the cache, by hand ----

def test_lru_by_hand():
    """2 slots, planned [a, b] (a hottest). a hit; c evicts b (least recent); b evicts a; c hit."""
    a, b, c = (0, 0), (0, 1), (0, 2)
    cache = ExpertCache(2, "lru", [a, b])
    hits = []
    for key in (a, c, b, c):
        hit = cache.use(key)
        hits.append(hit)
        if not hit:
            cache.insert(key)
    assert hits == [True, False, False, True]
    assert cache.cached == {b, c}


def test_lfu_by_hand():
    """2 slots, planned [a, b]. a, a, b hit: counts a 2, b 1. Then c, b, c all miss (see below)."""
    a, b, c = (0, 0), (0, 1), (0, 2)
    cache = ExpertCache(2, "lfu", [a, b])
    seen = []
    for key in (a, a, b, c, b, c):
        hit = cache.use(key)
        seen.append(hit)
        if not hit:
            cache.insert(key)
    # t4 c: evicts b (count 1 < a's 2); t5 b (count 2) misses, evicts c (count 1); t6 c (count 2) misses,
    # evicts the least recent of a (2, t2) and b (2, t5): a
    assert seen == [True, True, True, False, False, False]
    assert cache.cached == {b, c}


def test_static_never_changes():
    cache = ExpertCache(1, "static", [(0, 3), (0, 4)])
    assert cache.cached == {(0, 3)}
    assert not cache.use((0, 4)) and cache.insert((0, 4)) is None and cache.cached == {(0, 3)}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sets(st.integers(0, 11), min_size=1, max_size=4), min_size=1, max_size=40), st.integers(0, 10),
       st.sampled_from(["lru", "lfu", "static"]))
def test_more_slots_never_fewer_hits(batches, slots, policy):
    """LRU and counting LFU are stack algorithms, static keeps a prefix of the same ranking: one more slot
    never lowers the hits, and the larger cache holds a superset at every step (batched accesses, misses
    inserted after the batch, as the offload walk does)."""
    initial = [(0, e) for e in (5, 2, 9, 0, 7, 1, 3, 4, 6, 8, 10, 11)]
    prior = {(0, e): 12 - i for i, (_, e) in enumerate(initial)}

    def run(n):
        cache, hits, states = ExpertCache(n, policy, initial, prior.get), 0, []
        for batch in batches:
            keys = [(0, e) for e in sorted(batch)]
            got = cache.use_batch(keys)
            hits += sum(got)
            cache.insert_batch([key for key, hit in zip(keys, got) if not hit])
            states.append(set(cache.cached))
        return hits, states

    small, big = run(slots), run(slots + 1)
    assert big[0] >= small[0]
    assert all(s <= b for s, b in zip(small[1], big[1]))


def test_reuse_keeps_the_chosen_and_fills_from_fresh():
    prev = np.array([[1, 2, 3]])
    fresh = np.array([[3, 5, 6]])
    out = reuse(prev, fresh, np.array([[True, False, True]]))
    assert out.tolist() == [[1, 3, 5]]


# ---- hand-computed runs ----

def test_fetch_bound_tokens_per_s_is_link_bandwidth_over_bytes():
    """Nothing cached, every expert fetched, compute free: tokens/s = host link B/s / bytes per token."""
    s = _scenario({"plan": "host", "cache": "static", "miss": "fetch"})
    r = run_offload(s)
    per_token = LAYERS * K * EXPERT_BYTES
    assert r.doc["host_bytes_per_token"]["fetch"] == pytest.approx(per_token)
    assert r.doc["tokens_per_s"] == pytest.approx(1e9 / per_token, rel=1e-9)
    assert r.doc["cache"]["hit_rate"] == 0.0
    split = r.doc["time_per_token_split_s"]
    assert split["fetch_stall"] == pytest.approx(r.doc["time_per_token_s"], rel=1e-9)


def test_nvme_home_is_bound_by_the_nvme_read():
    s = _scenario({"plan": "host", "cache": "static", "miss": "fetch", "home": "nvme"})
    assert run_offload(s).doc["tokens_per_s"] == pytest.approx(1e8 / (LAYERS * K * EXPERT_BYTES), rel=1e-9)


def test_cpu_bound_time_per_token_by_hand():
    """Every expert on the CPU (1 GFLOP/s, 1 GB/s for weights, 1 ms a call), activations over a 1 GB/s link:
    per layer K experts of 1 token each, then the activations' two crossings."""
    host = {"cpu_flops": 1e9, "dram_bandwidth": 1e9, "cpu_expert_overhead": 1e-3}
    s = _scenario({"plan": "host", "cache": "static", "miss": "cpu"}, host=host)
    r = run_offload(s)
    one = 1e-3 + EXPERT_BYTES / 1e9 + 2 * 3 * H * F / 1e9
    act = K * H * 2 / 1e9  # K token copies of H BF16 values, each way
    assert r.doc["time_per_token_s"] == pytest.approx(LAYERS * (K * one + 2 * act), rel=1e-9)
    assert r.doc["cache"]["expert_uses_per_step"]["cpu"] == LAYERS * K
    assert r.doc["time_per_token_split_s"]["cpu_experts"] == pytest.approx(r.doc["time_per_token_s"], rel=1e-9)


def test_everything_resident_never_touches_the_host():
    r = run_offload(_scenario({"plan": "hottest", "cache": "static"}))
    assert r.doc["cache"]["hit_rate"] == 1.0 and r.doc["host_bytes_per_token"]["total"] == 0.0
    assert r.doc["memory"]["experts_home"] == "hbm"


def test_oracle_prefetch_hides_fetches_behind_attention():
    """With every expert prefetched by the oracle, no demand fetch is left."""
    r = run_offload(_scenario({"plan": "host", "cache": "static", "prefetch": "oracle", "prefetch_experts": K}))
    assert r.doc["cache"]["prefetch_hit_rate"] == 1.0
    assert r.doc["host_bytes_per_token"]["fetch"] == 0.0
    assert r.doc["cache"]["prefetch_used"] == 1.0


def test_cheaper_picks_the_cpu_when_the_link_is_slow():
    s = _scenario({"plan": "host", "miss": "cheaper"}, host={"host_link_bandwidth": 1e6})
    assert run_offload(s).doc["cache"]["expert_uses_per_step"]["cpu"] == LAYERS * K
    s = _scenario({"plan": "host", "miss": "cheaper"}, host={"cpu_flops": 1e6})
    assert run_offload(s).doc["cache"]["expert_uses_per_step"]["gpu_fetched"] == LAYERS * K


def test_locality_raises_the_lru_hit_rate():
    def rate(q):
        stats = {"kind": "zipf", "alpha": 0.5, "locality": q}
        return run_offload(_scenario({"gpu_expert_share": 0.25, "cache": "lru", "steps": 64}, stats=stats,
                                     tokens=1)).doc["cache"]["hit_rate"]

    assert rate(0.9) > rate(0.0)


# (miss, cache) pairs whose cache contents do not depend on the link: fetch keeps every miss, cpu and a
# static cache keep none. With cheaper and lru / lfu a faster link fetches (and so keeps) other experts than a
# slower one, and the cache's later hits differ: see docs/offload.md.
LINK_FREE_CACHES = [("fetch", "lru"), ("fetch", "static"), ("cheaper", "static"), ("cpu", "lfu")]


@settings(max_examples=8, deadline=None)
@given(st.floats(1e8, 1e10), st.floats(1.001, 8.0), st.sampled_from(LINK_FREE_CACHES), st.sampled_from([1, 2]))
def test_more_host_bandwidth_never_fewer_tokens_per_s(bw, factor, miss_cache, gpus):
    miss, cache = miss_cache
    off = {"gpu_expert_share": 0.25, "cache": cache, "miss": miss}
    host = {"cpu_flops": 5e10, "dram_bandwidth": 5e10, "cpu_expert_overhead": 1e-5}
    slow = run_offload(_scenario(off, host={**host, "host_link_bandwidth": bw}, tokens=2, gpus=gpus))
    fast = run_offload(_scenario(off, host={**host, "host_link_bandwidth": bw * factor}, tokens=2, gpus=gpus))
    assert fast.doc["tokens_per_s"] >= slow.doc["tokens_per_s"] * (1 - 1e-9)


def _miss_costs(s):
    r = resolve(s)
    return MissCosts(s, plan_tiers(s).expert_bytes, cost_model(s.cluster, r.model, r.routing.top_k).expert)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=12), st.floats(1e8, 1e11), st.floats(1.0, 16.0))
def test_the_cheaper_split_is_never_slower_on_a_faster_link(tokens, bw, factor):
    host = {"cpu_flops": 5e10, "dram_bandwidth": 5e10, "cpu_expert_overhead": 1e-5}
    tokens = sorted(tokens, reverse=True)
    done = [_miss_costs(_scenario({"miss": "cheaper"}, host={**host, "host_link_bandwidth": b})).finish_s(tokens)
            for b in (bw, bw * factor)]
    assert done[1].min() <= done[0].min() * (1 + 1e-12)
    assert np.all(done[1] <= done[0] * (1 + 1e-12))  # every candidate, not only the best


@pytest.mark.parametrize("link", [1e9, 4e9, 2e10])
def test_the_split_costs_what_the_engine_charges(link):
    """One GPU, every expert on the host: the time from permute's end to the last expert branch's end is
    ``finish_s`` of the chosen split (within the 0.3% that the CPU's returning activations take from the
    copy when both are on the host-to-GPU link at once), and no other split would have been quicker."""
    host = {"cpu_flops": 5e10, "dram_bandwidth": 5e10, "cpu_expert_overhead": 1e-5, "host_link_bandwidth": link}
    s = _scenario({"plan": "host", "miss": "cheaper", "steps": 1}, host=host, tokens=4)
    r, mc = run_offload(s), _miss_costs(s)
    for p, la in enumerate(r.accesses[0]):
        ends = [r.records.stage(p, n)[0, 2] for n in ("fetched_experts", "cpu_experts", "from_cpu")
                if n in r.records.names[p]]
        done = mc.finish_s(sorted(la.fetched_tokens[0] + la.cpu_tokens[0], reverse=True))
        k = len(la.fetched_tokens[0])
        assert max(ends) - r.records.stage(p, "permute")[0, 2] == pytest.approx(done[k], rel=3e-3)
        assert done[k] == done.min()


def test_two_gpus_split_the_experts_and_exchange_tokens():
    r = run_offload(_scenario({"plan": "host", "miss": "fetch"}, gpus=2, tokens=2))
    names = r.programs[0][0].names
    assert "dispatch" in names and "combine" in names
    assert r.doc["gpus"] == 2


def test_same_seed_same_document():
    a = run_offload(_scenario({"gpu_expert_share": 0.5, "cache": "lfu"}, stats={"kind": "zipf", "alpha": 1.0}))
    b = run_offload(_scenario({"gpu_expert_share": 0.5, "cache": "lfu"}, stats={"kind": "zipf", "alpha": 1.0}))
    assert json.dumps(a.doc) == json.dumps(b.doc)


ROOT = Path(__file__).resolve().parent.parent
OFFLOAD_SCENARIOS = [p for p in sorted((ROOT / "scenarios").glob("*.yaml")) if "\noffload:" in p.read_text()]


def test_there_are_offload_examples():
    assert len(OFFLOAD_SCENARIOS) >= 4


@pytest.mark.parametrize("scenario", OFFLOAD_SCENARIOS, ids=lambda p: p.stem)
def test_shipped_offload_scenarios_run(scenario):
    r = CliRunner().invoke(main, ["run", str(scenario), "--set", "offload.steps=2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kind"] == "offload" and doc["tokens_per_s"] > 0 and doc["memory"]["hbm_per_gpu"]["fits"]
    split = doc["time_per_token_split_s"]
    assert sum(split.values()) == pytest.approx(doc["time_per_token_s"], rel=1e-6)
    table = CliRunner().invoke(main, ["run", str(scenario), "--set", "offload.steps=2"])
    assert table.exit_code == 0 and "throughput" in table.output and "hit rate" in table.output


def test_ktransformers_published_decode():
    """KTransformers V0.2, DeepSeek-V3 Q4_K_M, one Xeon Gold 6454S socket + RTX 4090 D: 8.73 tokens/s
    published, a test row of the engine's fit (moesim validate offload). The prediction stays within 10%."""
    r = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/deepseek-v3-ktransformers.yaml"), "--json"])
    got = json.loads(r.stdout)["tokens_per_s"]
    assert abs(got / 8.73 - 1) < 0.10


# ---- bad input ----

@pytest.mark.parametrize("offload,host,match", [
    ({"gpu_expert_bytes": 5e9}, {}, "exceeds"),
    ({"plan": "layers", "cpu_moe_layers": 9}, {}, "cpu_moe_layers"),
    ({"gpu_expert_bytes": 1e5, "gpu_expert_share": 0.5}, {}, "one way"),
    ({"plan": "host"}, {"dram_bytes": 1e3}, "DRAM"),
])
def test_bad_plans_name_the_field(offload, host, match):
    with pytest.raises(ScenarioError, match=match):
        run_offload(_scenario(offload, host=host))


def test_offload_without_a_host_is_one_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("model: mixtral-8x7b\ncluster: {gpu: rtx-4090, nodes: 1, gpus_per_node: 1}\n"
                 "workload: {mode: decode, tokens_per_gpu: 1}\noffload: {}\n")
    r = CliRunner().invoke(main, ["run", str(p)])
    assert r.exit_code == 2 and "cluster.host" in r.output and "Traceback" not in r.output
    p.write_text("model: mixtral-8x7b\ncluster: {gpu: rtx-4090, nodes: 1, gpus_per_node: 1, host: workstation}\n"
                 "offload: {}\n")
    r = CliRunner().invoke(main, ["run", str(p)])
    assert r.exit_code == 2 and "workstation-4090" in r.output
    p.write_text("model: mixtral-8x7b\ncluster: {gpu: rtx-4090, nodes: 1, gpus_per_node: 1, host: workstation-4090}\n"
                 "offload: {home: ssd}\n")
    r = CliRunner().invoke(main, ["run", str(p)])
    assert r.exit_code == 2 and "offload.home" in r.output


def test_trace_replay_keeps_the_trace_order():
    """The tiny LM's real routing: sequence j reads tokens j·steps ... in order, so its hit rate comes from
    the trace's own locality; a long enough trace is exact."""
    trace = str(ROOT / "calibrate/traces/tiny-moe-stdlib.npz")
    raw = {"model": {"name": "tiny", "hidden_size": 96, "moe_intermediate_size": 192, "n_routed_experts": 16,
                     "num_experts_per_tok": 2, "num_hidden_layers": 4},
           "cluster": {"gpu": _gpu(), "nodes": 1, "gpus_per_node": 1, "host": _host()},
           "router": {"stats": {"kind": "trace", "path": trace}},
           "workload": {"mode": "decode", "tokens_per_gpu": 2, "scope": "moe_layers"},
           "offload": {"gpu_expert_share": 0.25, "cache": "lru", "steps": 64}}
    r = run_offload(scenario_from_dict(raw))
    assert r.doc["fidelity"]["routing"] == "trace replay"
    ids = np.load(trace)["topk_ids"]
    from moesim.offload.steps import step_ids
    got, exact = step_ids(scenario_from_dict(raw), None, np.ones((4, 16)) / 16, 64, 2)
    assert exact and (got[:, 0, 1] == ids[0, 64:128]).all()
    assert 0 < r.doc["cache"]["hit_rate"] < 1


def test_host_calibration_pieces(tmp_path):
    """moesim/calibrate/host.py's measurements on tiny sizes, and its fit recovering known rates."""
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[calibrate]')")
    from moesim.calibrate import host
    read, copy = host.memory_rates(mib=8, reps=2)
    assert read > 0 and copy > 0
    assert host.disk_read_rate(tmp_path, mib=16, reps=1) > 0
    assert host.expert_call(64, 128, 2, 1, stream_bytes=1 << 20) > 0
    rows = [{"tokens": n, "weight_bytes": w, "flops": 2.0 * n * w, "seconds": 1e-4 + w / 5e9 + 2.0 * n * w / 2e10}
            for w in (1e6, 4e6, 1.6e7) for n in (2, 4, 8, 16)]
    rows += [{"tokens": 1, "weight_bytes": w, "flops": 2.0 * w, "seconds": 1e-4 + w / 1e10 + 2.0 * w / 2e10}
             for w in (1e6, 4e6)]
    c0, wb, fl, wb1 = host.fit(rows)
    assert c0 == pytest.approx(1e-4, rel=1e-6) and wb == pytest.approx(5e9, rel=1e-6)
    assert fl == pytest.approx(2e10, rel=1e-6) and wb1 == pytest.approx(1e10, rel=1e-6)


def test_measured_host_profile_is_labelled_and_loads():
    from moesim.config import catalog
    assert "cpu-ref" in catalog.host_names()
    entry = catalog.host_entry("cpu-ref")
    assert entry["cpu_flops"]["label"] == "measured" and entry["nvme_read_bandwidth"]["label"] == "measured"
    doc = json.loads((ROOT / "moesim/config/catalog/hosts/cpu-ref.json").read_text())
    assert {"device_name", "date_utc", "torch", "grid", "command"} <= set(doc["provenance"])
    assert doc["held_out"]["rows"] and all("error" in r for r in doc["held_out"]["rows"])


def test_list_hosts_and_check():
    r = CliRunner().invoke(main, ["list", "hosts"])
    assert r.exit_code == 0 and "workstation-4090" in r.output and "datasheet" in r.output
    r = CliRunner().invoke(main, ["check", str(ROOT / "scenarios/mixtral-8x7b-offload-4090.yaml")])
    assert r.exit_code == 0 and "tier plan" in r.output


@settings(max_examples=10, deadline=None)
@given(st.floats(0.0, 0.9), st.floats(0.05, 0.5), st.sampled_from(["lfu", "static", "lru"]),
       st.sampled_from(["model", "layer"]))
def test_more_gpu_memory_never_lowers_the_hit_rate(share, more, cache, scope):
    """A whole run: a larger expert budget never lowers the hit rate (no prefetch: prefetches are
    inserted outside the batch order and break the stack property on purpose)."""
    stats = {"kind": "zipf", "alpha": 0.9, "locality": 0.3}

    def rate(x):
        off = {"gpu_expert_share": min(1.0, x), "cache": cache, "cache_scope": scope, "steps": 6}
        return run_offload(_scenario(off, stats=stats, tokens=2)).doc["cache"]["hit_rate"]

    assert rate(share + more) >= rate(share) - 1e-12


def test_serving_an_offload_scenario(tmp_path, monkeypatch):
    """`moesim serve` on an offload scenario: its iteration surface comes from offload runs, its KV cache
    from the GPU memory the expert budget leaves."""
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    path = str(ROOT / "scenarios/mixtral-8x7b-offload-serve-4090.yaml")
    small = ["--set", "serving.requests=20", "--set", "model.num_hidden_layers=4"]
    r = CliRunner().invoke(main, ["serve", path, *small, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["throughput"]["output_tokens_per_s"] > 0 and doc["requests"]
    assert doc["instances"][0]["kv_tokens_per_instance"] > 0
    r = CliRunner().invoke(main, ["serve", path, *small, "--set", "offload.gpu_expert_bytes=null"])
    assert r.exit_code == 2 and "offload.gpu_expert_bytes" in r.output


def test_kv_room_is_what_the_budget_leaves():
    from moesim.model.memory import kv_bytes_per_cached_token
    from moesim.offload.tiers import kv_room_bytes
    from moesim.serve.deploy import kv_capacity_tokens_per_gpu
    s = scenario_from_dict({"model": {"base": "mixtral-8x7b", "weight_dtype": "fp8"},
                            "cluster": {"gpu": "rtx-4090", "nodes": 1, "gpus_per_node": 1, "host": "workstation-4090"},
                            "workload": {"mode": "decode", "tokens_per_gpu": 1},
                            "offload": {"gpu_expert_bytes": 12 * 2**30}})
    room = kv_room_bytes(s)
    assert 0 < room < 24e9 - 12 * 2**30
    assert kv_capacity_tokens_per_gpu(s, 1, 1.0) == pytest.approx(room / kv_bytes_per_cached_token(s))
