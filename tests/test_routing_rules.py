"""Routing rules and router-statistics sources: properties (hypothesis), brute-force references, formats."""

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import api
from moesim.cli.main import main
from moesim.iteration.scenario import scenario_from_dict
from moesim.routing import RoutingParams, route
from moesim.routing.analysis import gini, max_vio
from moesim.routing.router import capacity_keep, scores, select_topk
from moesim.util.errors import ScenarioError


def rule(experts=8, k=2, n_group=4, topk_group=2, score="sum_top2", sf="sigmoid", bias=None, **kw):
    return RoutingParams(experts, k, n_group, topk_group, score, sf, None,
                         bias=tuple(bias) if bias is not None else None, **kw)


def brute(r_row, p):
    """Every allowed set of groups by group score on (score + bias); then top-k of (score + bias)."""
    s = scores(r_row[None], p.scoring_func)[0]
    sel = s + (np.asarray(p.bias) if p.bias is not None else 0.0)
    size = p.experts // p.n_group
    g = sel.reshape(p.n_group, size)
    gs = g.max(axis=1) if p.group_score == "max" else np.sort(g, axis=1)[:, -2:].sum(axis=1)
    best = max(itertools.combinations(range(p.n_group), p.topk_group), key=lambda c: gs[list(c)].sum())
    allowed = np.concatenate([np.arange(b * size, (b + 1) * size) for b in best])
    return set(allowed[np.argsort(-sel[allowed])[: p.top_k]].tolist())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["max", "sum_top2"]), st.sampled_from(["softmax", "sigmoid"]))
def test_selection_with_bias_matches_brute_force(seed, score, sf):
    rng = np.random.default_rng(seed)
    p = rule(score=score, sf=sf, bias=rng.normal(0, 0.3, 8))
    r = rng.exponential(size=(20, 8)).astype(np.float32)
    for row, chosen in zip(r, select_topk(r, p)):
        assert set(chosen.tolist()) == brute(row, p)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3), st.sampled_from(["max", "sum_top2"]))
def test_placement_limited_routing_never_exceeds_m_nodes(seed, m, score):
    rng = np.random.default_rng(seed)
    home = rng.permutation(np.repeat(np.arange(4), 4))  # 16 experts on 4 nodes, scattered ids
    p = rule(experts=16, k=4, n_group=1, topk_group=1, limit_scope="nodes", limit_max=m, limit_score=score)
    out = route(rng.dirichlet(np.ones(16)), 200, p, rng, home=home)
    assert all(len(set(home[row].tolist())) <= m for row in out.ids)
    assert (np.diff(np.sort(out.ids, axis=1), axis=1) > 0).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.3, 1.5), st.sampled_from(["position", "probs"]), st.integers(2, 16))
def test_capacity_is_never_exceeded_and_probs_keeps_the_best(seed, factor, policy, bins):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, bins, size=(60, 2))
    score = rng.random((60, 2)).astype(np.float32)
    live = rng.random((60, 2)) > 0.1
    cap = 120 * factor / bins
    keep = capacity_keep(ids, live, bins, cap, policy, score)
    assert not (keep & ~live).any()
    assert np.bincount(ids[keep], minlength=bins).max() <= np.floor(cap)
    if policy == "probs":  # every dropped live assignment scores below every kept one of its bin
        for b in range(bins):
            kept, dropped = score[keep & (ids == b)], score[live & ~keep & (ids == b)]
            if kept.size and dropped.size:
                assert dropped.max() <= kept.min()


def test_expert_choice_gives_every_expert_its_capacity():
    p = rule(experts=8, k=2, n_group=1, topk_group=1, rule="expert_choice")
    out = route(np.full(8, 1 / 8), 64, p, np.random.default_rng(0))
    counts = np.bincount(out.ids[out.keep], minlength=8)
    assert (counts == 64 * 2 // 8).all()


def test_hash_routing_is_skewed_by_token_frequency_only():
    p = rule(experts=16, k=2, n_group=1, topk_group=1, rule="hash", hash_vocab=1000, hash_zipf=1.2)
    out = route(np.full(16, 1 / 16), 5000, p, np.random.default_rng(0))
    assert (np.diff(np.sort(out.ids, axis=1), axis=1) > 0).all()  # distinct experts
    flat = rule(experts=16, k=2, n_group=1, topk_group=1, rule="hash", hash_vocab=1000, hash_zipf=0.0)
    uniform = route(np.full(16, 1 / 16), 5000, flat, np.random.default_rng(0))
    assert gini(np.bincount(out.ids.ravel(), minlength=16)) > gini(np.bincount(uniform.ids.ravel(), minlength=16))


def test_gini_and_maxvio_by_hand():
    assert gini(np.ones(4)) == 0.0
    assert gini(np.array([0, 0, 0, 1.0])) == pytest.approx(0.75)
    assert max_vio(np.array([1.0, 1, 1, 5])) == pytest.approx(1.5)


def _toy(small_v3, **router):
    small_v3["router"] = {**small_v3.get("router", {}), **router}
    return small_v3


def test_trace_is_replayed_exactly_and_copies_are_conserved(small_v3, tmp_path):
    rng = np.random.default_rng(1)
    g, t, k = 16, 256, 8
    ids = np.stack([np.stack([rng.choice(256, k, replace=False) for _ in range(g * t)]) for _ in range(3)])
    np.savez(tmp_path / "trace.npz", topk_ids=ids)
    raw = _toy(small_v3, stats={"kind": "trace", "path": "trace.npz"})
    res = api.run_scenario(scenario_from_dict(raw, base_dir=tmp_path))
    assert res.doc["fidelity"]["routing"] == "trace replay"
    for layer, ls in enumerate(res.built.stats):
        assert np.array_equal(ls.expert_tokens, np.bincount(ids[layer].ravel(), minlength=256))
        assert ls.copies + ls.dropped == g * t * k


def test_histogram_formats_load_to_the_same_popularity(small_v3, tmp_path):
    rng = np.random.default_rng(2)
    h = rng.integers(0, 100, size=(3, 256)).astype(float)
    np.save(tmp_path / "h.npy", h)
    np.savetxt(tmp_path / "h.csv", h, delimiter=",", header=",".join(f"e{i}" for i in range(256)), comments="")
    (tmp_path / "h.json").write_text(json.dumps({"logical_count": h[None].tolist()}))
    # physical counts (2 replicas of expert 0 in 257 slots) with their map fold to logical counts
    phys = np.concatenate([h[:, :1] / 2, h[:, :1] / 2, h[:, 1:]], axis=1)
    np.savez(tmp_path / "h.npz", expert_load_pass=phys,
             physical_to_logical_map=np.tile(np.r_[0, np.arange(256)], (3, 1)))
    pops = []
    for name in ("h.npy", "h.csv", "h.json", "h.npz"):
        res = api.run_scenario(scenario_from_dict(_toy(dict(small_v3), stats={"kind": "histogram", "path": name}),
                                                  base_dir=tmp_path))
        pops.append(res.built.stats[0].expert_tokens.sum())
    assert np.allclose(pops, pops[0])


def test_a_bad_histogram_is_one_clear_error(small_v3, tmp_path):
    np.save(tmp_path / "bad.npy", np.ones((5, 256)))  # 5 layers, the model has 3 MoE layers
    with pytest.raises(ScenarioError, match="router.stats.*5 layers"):
        scenario_from_dict(_toy(small_v3, stats={"kind": "histogram", "path": "bad.npy"}), base_dir=tmp_path)


def test_layer_correlation_one_keeps_the_same_hot_experts(small_v3):
    from moesim.config.schema import ZipfStats
    from moesim.routing.stats import expert_popularity

    same = expert_popularity(ZipfStats(alpha=1.2, layer_correlation=1.0), 4, 64, np.random.default_rng(0))
    assert all(np.argmax(row) == np.argmax(same[0]) for row in same)
    indep = expert_popularity(ZipfStats(alpha=1.2), 8, 64, np.random.default_rng(0))
    assert len({int(np.argmax(row)) for row in indep}) > 1


def test_stats_command_summarises_and_fits(tmp_path):
    rng = np.random.default_rng(3)
    w = np.arange(1, 17, dtype=float) ** -1.0
    ids = np.stack([np.stack([rng.choice(16, 2, replace=False, p=w / w.sum()) for _ in range(400)])
                    for _ in range(2)])
    np.savez(tmp_path / "t.npz", topk_ids=ids)
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "t.npz"), "--gpus", "4", "--gpus-per-node", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["kind"] == "trace" and len(doc["layers"]) == 2
    assert 0.6 < doc["suggested_stats"]["alpha"] < 1.3
    assert 1.0 <= doc["layers"][0]["nodes_per_token"] <= 2.0
    bad = CliRunner().invoke(main, ["stats", str(tmp_path / "t.npz"), "--gpus", "3"])
    assert bad.exit_code == 2 and "--gpus" in bad.output


def test_coactivation_makes_cluster_experts_chosen_together():
    from moesim.config.schema import Coactivation
    from moesim.routing.router import route_clusters
    from moesim.routing.stats import coactivation_mixture

    p = rule(experts=32, k=2, n_group=1, topk_group=1)
    rng = np.random.default_rng(0)
    pops, _ = coactivation_mixture(np.full(32, 1 / 32), Coactivation(clusters=4, experts_per_cluster=4,
                                                                       strength=30), rng)
    sets = [set(np.argsort(-row)[:4].tolist()) for row in pops]
    together = route_clusters(pops, 4000, p, rng).ids
    apart = route(np.full(32, 1 / 32), 4000, p, rng).ids

    def both_in_one_set(ids):
        return np.mean([any({a, b} <= s for s in sets) for a, b in ids.tolist()])

    assert both_in_one_set(together) > 0.5 > 5 * both_in_one_set(apart)


def test_drift_moves_hot_experts_slowly():
    from moesim.config.schema import ZipfStats
    from moesim.routing.stats import expert_popularity

    def hot(step, drift=0.1):
        p = expert_popularity(ZipfStats(alpha=1.5, drift=drift, step=step), 1, 64, np.random.default_rng(0))
        return set(np.argsort(-p[0])[:8].tolist())

    assert hot(0) == hot(0, drift=0.0)  # step 0 does not depend on the drift rate
    assert len(hot(0) & hot(1)) >= 6  # one step: almost the same hot experts
    assert len(hot(0) & hot(400)) <= 4  # many steps: mostly different ones


def test_shipped_tiny_moe_trace_replays_exactly():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    res = api.run(root / "scenarios/tiny-moe-trace-cpu.yaml")
    trace = np.load(root / "calibrate/traces/tiny-moe-stdlib.npz")["topk_ids"]
    assert res.doc["fidelity"]["routing"] == "trace replay"
    assert np.array_equal(res.built.stats[0].expert_tokens, np.bincount(trace[0].ravel(), minlength=16))
    meta = json.loads((root / "calibrate/traces/tiny-moe-stdlib.json").read_text())
    assert [round(gini(np.bincount(layer.ravel(), minlength=16)), 6) for layer in trace] == \
        [round(g, 6) for g in meta["gini_per_layer"]]
