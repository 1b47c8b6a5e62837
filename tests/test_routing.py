"""Routing invariants (hypothesis) and a brute-force reference for group-limited selection."""

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.routing import RoutingParams, route_layer
from moesim.routing.router import _scores, apply_capacity, route_dense, select_topk
from moesim.routing.topdown import sample_topk


@st.composite
def rules(draw):
    n_group = draw(st.sampled_from([1, 2, 4]))
    size = draw(st.integers(2, 4))
    experts = n_group * size
    topk_group = draw(st.integers(1, n_group))
    top_k = draw(st.integers(1, topk_group * size))
    return RoutingParams(experts, top_k, n_group, topk_group, draw(st.sampled_from(["max", "sum_top2"])),
                         draw(st.sampled_from(["softmax", "sigmoid"])), None)


def brute_force(r_row, p):
    """Try every allowed set of groups; keep the best-scoring ones; top-k inside them."""
    size = p.experts // p.n_group
    grouped = r_row.reshape(p.n_group, size)
    if p.group_score == "max":
        gscore = grouped.max(axis=1)
    else:
        gscore = np.sort(_scores(grouped, p.scoring_func), axis=1)[:, -2:].sum(axis=1)
    best = max(itertools.combinations(range(p.n_group), p.topk_group), key=lambda c: gscore[list(c)].sum())
    allowed = np.concatenate([np.arange(g * size, (g + 1) * size) for g in best])
    return set(allowed[np.argsort(-r_row[allowed])[: p.top_k]].tolist())


@settings(max_examples=60, deadline=None)
@given(rules(), st.integers(0, 2**31))
def test_selection_matches_brute_force_and_respects_group_limit(p, seed):
    r = np.random.default_rng(seed).exponential(size=(20, p.experts)).astype(np.float32)
    ids = select_topk(r, p)
    for row, chosen in zip(r, ids):
        assert len(set(chosen.tolist())) == p.top_k
        assert len(set((chosen // (p.experts // p.n_group)).tolist())) <= p.topk_group
        assert set(chosen.tolist()) == brute_force(row, p)


@settings(max_examples=30, deadline=None)
@given(rules(), st.floats(0.2, 2.0), st.integers(0, 2**31))
def test_capacity_is_never_exceeded_and_copies_are_conserved(p, factor, seed):
    rng = np.random.default_rng(seed)
    ids = route_layer(np.full(p.experts, 1 / p.experts), 64, p, rng)
    cap = 64 * p.top_k * factor / p.experts
    keep = apply_capacity(ids, p.experts, cap)
    assert np.bincount(ids[keep], minlength=p.experts).max() <= np.floor(cap)
    assert keep.sum() + (~keep).sum() == ids.size
    # position policy: what survives is a prefix of each expert's assignments in token order
    for e in range(p.experts):
        kept = keep[ids == e]
        assert not (np.diff(kept.astype(int)) > 0).any()


def test_selection_frequencies_follow_the_popularity():
    p = RoutingParams(8, 1, 1, 1, "max", "softmax", None)
    pop = np.array([0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    ids = route_layer(pop, 200_000, p, np.random.default_rng(0))
    freq = np.bincount(ids.ravel(), minlength=8) / ids.size
    assert np.abs(freq - pop).max() < 0.005


@settings(max_examples=40, deadline=None)
@given(rules(), st.integers(0, 2**31))
def test_top_down_sampler_respects_group_limit(p, seed):
    rng = np.random.default_rng(seed)
    pop = rng.dirichlet(np.full(p.experts, 0.5))  # skewed, some experts nearly never chosen
    ids = sample_topk(pop, 200, p, rng)
    assert ids.shape == (200, p.top_k)
    assert (np.diff(np.sort(ids, axis=1), axis=1) > 0).all()  # distinct
    size = p.experts // p.n_group
    groups = ids // size
    for row in groups:
        assert len(set(row.tolist())) <= p.topk_group


def _two_sample_chi2(a, b):
    """Chi-square statistic and degrees of freedom for two equal-size samples of expert sets."""
    ca, cb = (Counter(map(tuple, np.sort(x, axis=1).tolist())) for x in (a, b))  # sets, not orders
    cells = [(ca[k], cb[k]) for k in set(ca) | set(cb) if ca[k] + cb[k] >= 20]
    return sum((x - y) ** 2 / (x + y) for x, y in cells), len(cells) - 1


@pytest.mark.parametrize("rule", [
    RoutingParams(8, 2, 4, 2, "sum_top2", "sigmoid", None),   # DeepSeek-V3 style
    RoutingParams(8, 3, 4, 2, "max", "softmax", None),        # DeepSeek-V2 style
    RoutingParams(12, 3, 3, 1, "sum_top2", "sigmoid", None),  # one group kept
    RoutingParams(6, 2, 1, 1, "max", "softmax", None),        # no group limit
])
def test_top_down_sampler_has_the_dense_routers_law(rule):
    """The joint law of the chosen expert set matches scoring every expert: a two-sample chi-square over
    all k-subsets stays below dof + 6 sd (a wrong truncation or group score lands far above)."""
    pop = np.random.default_rng(0).dirichlet(np.full(rule.experts, 0.7))
    dense = route_dense(pop, 100_000, rule, np.random.default_rng(1))
    lazy = sample_topk(pop, 100_000, rule, np.random.default_rng(2))
    chi2, dof = _two_sample_chi2(dense, lazy)
    assert chi2 < dof + 6 * np.sqrt(2 * dof)


def _pure(pop, n, rule, rng, monkeypatch):
    from moesim.routing import topdown_jit
    with monkeypatch.context() as m:
        m.setattr(topdown_jit, "available", lambda: False)
        return sample_topk(pop, n, rule, rng)


@settings(max_examples=40, deadline=None)
@given(rules(), st.integers(0, 2**31), st.integers(1, 300))
def test_compiled_sampler_gives_the_numpy_samplers_ids_bit_for_bit(p, seed, n):
    """numba (when installed) runs the same draws in the same order: identical ids, not just the same law."""
    from moesim.routing import topdown_jit
    if not topdown_jit.available():
        pytest.skip("numba is not installed (pip install 'moesim[fast]')")
    pop = np.random.default_rng(seed).dirichlet(np.full(p.experts, 0.3))  # hot experts: rejection and inversion
    fast = sample_topk(pop, n, p, np.random.default_rng(seed + 1))
    mp = pytest.MonkeyPatch()
    try:
        slow = _pure(pop, n, p, np.random.default_rng(seed + 1), mp)
    finally:
        mp.undo()
    assert np.array_equal(fast, slow)


def test_compiled_sampler_matches_across_chunks_on_deepseek_v3_shape(monkeypatch):
    from moesim.routing import topdown_jit
    if not topdown_jit.available():
        pytest.skip("numba is not installed (pip install 'moesim[fast]')")
    rule = RoutingParams(256, 8, 8, 4, "sum_top2", "sigmoid", None)
    pop = np.random.default_rng(3).dirichlet(np.full(256, 0.2))
    rng = lambda: np.random.Generator(np.random.SFC64(9))  # noqa: E731 (the build's generator)
    assert np.array_equal(sample_topk(pop, 9000, rule, rng()), _pure(pop, 9000, rule, rng(), monkeypatch))
