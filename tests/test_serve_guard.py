"""Stopping a serving run once its SLO verdict is certain (moesim.serve.guard): a stopped run's verdict is
the whole run's, a run that is not stopped is the same run, and overloaded, slow and comfortable runs stop
early."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.serve import simulate_serving
from moesim.serve.guard import SloGuard
from moesim.serve.run import requests_of
from tests.test_serve_spans import build, shaped


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 400), p=st.sampled_from([50, 90, 95, 99]), seed=st.integers(0, 2**32 - 1))
def test_the_counts_decide_numpys_percentile(n, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([0.5, 1.0 - 1e-9, 1.0, 1.5, 2.0]), size=n)  # ties at the limit (1.0) included
    g = SloGuard(1.0, 1.0, p)
    if int((x > 1.0).sum()) >= g._enough(n):
        assert np.percentile(x, p) > 1.0
    if int((x < 1.0 * (1 - 1e-12)).sum()) >= g._within(n):
        assert np.percentile(x, p) <= 1.0


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.5, 80), closed=st.sampled_from([None, 4, 30]), isl=st.integers(50, 6000),
       osl=st.integers(1, 300), ttft=st.sampled_from([0.05, 0.3, 2.0]), tpot=st.sampled_from([0.006, 0.02, 0.1]),
       p=st.sampled_from([50, 90, 99]), shape=st.sampled_from(["one", "two", "disagg"]))
def test_a_stopped_run_would_have_missed_and_another_is_the_same_run(rate, closed, isl, osl, ttft, tpot, p, shape):
    serving = {"requests": 150, "input_tokens": {"kind": "random", "value": isl, "range_ratio": 0.5},
               "output_tokens": {"kind": "random", "value": osl, "range_ratio": 0.3},
               "slo": {"ttft_s": ttft, "tpot_s": tpot, "percentile": p}, "scheduler": {"max_batch": 16}}
    s, dep, surf = shaped(serving, closed, rate, shape)
    req = requests_of(s)
    full = simulate_serving(s, dep, req, surf).summary
    guarded = simulate_serving(s, dep, req, surf, verdict_only=True).summary
    if "decided_at_s" in guarded["slo"]:
        assert guarded["slo"]["met"] == full["slo"]["met"]
    else:
        assert json.dumps(guarded, sort_keys=True) == json.dumps(full, sort_keys=True)


def test_an_overloaded_run_stops_early_on_ttft_and_a_slow_one_on_tpot():
    over = {"arrival": {"kind": "poisson", "rate_per_s": 60}, "requests": 2000,
            "output_tokens": {"kind": "constant", "value": 100}, "slo": {"ttft_s": 0.5, "tpot_s": 1.0}}
    s, dep, surf = build(over, 1)
    full = simulate_serving(s, dep, requests_of(s), surf).summary
    cut = simulate_serving(s, dep, requests_of(s), surf, verdict_only=True).summary
    assert full["slo"][f"ttft_p{full['slo']['percentile']}_s"] > 0.5 and not full["slo"]["met"]
    assert cut["slo"]["decided_at_s"] < 0.2 * full["duration_s"] and not cut["slo"]["met"]
    slow = {"arrival": {"kind": "poisson", "rate_per_s": 1}, "requests": 400,
            "output_tokens": {"kind": "constant", "value": 100}, "slo": {"ttft_s": 10.0, "tpot_s": 0.001}}
    s, dep, surf = build(slow, 1)
    cut = simulate_serving(s, dep, requests_of(s), surf, verdict_only=True).summary
    full = simulate_serving(s, dep, requests_of(s), surf).summary
    assert full["slo"]["ttft_p90_s"] < 10.0 and not full["slo"]["met"]  # TPOT misses, TTFT does not
    assert cut["slo"]["decided_at_s"] < 0.2 * full["duration_s"] and not cut["slo"]["met"]
    easy = {"arrival": {"kind": "poisson", "rate_per_s": 2}, "requests": 400,
            "output_tokens": {"kind": "constant", "value": 100}, "slo": {"ttft_s": 10.0, "tpot_s": 1.0,
                                                                        "percentile": 50}}
    s, dep, surf = build(easy, 1)
    cut = simulate_serving(s, dep, requests_of(s), surf, verdict_only=True).summary
    full = simulate_serving(s, dep, requests_of(s), surf).summary
    assert full["slo"]["met"] and cut["slo"]["met"]  # p50: met once half the requests have finished within
    assert cut["slo"]["decided_at_s"] < 0.6 * full["duration_s"]
