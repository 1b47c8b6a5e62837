"""Decode spans (moesim.serve.spans) against the step-by-step serving DES: on random streams, deployments,
schedulers and loads the two give the same summary, request table and timeline to the last bit, and spans
do run (most decode steps of a light load are inside one)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.iteration.scenario import scenario_from_dict
from moesim.serve import simulate_serving
from moesim.serve.deploy import deployment_of
from moesim.serve.run import prefix_hit, requests_of
from moesim.serve.sim import ServeSim
from moesim.serve.spans import exact_delay
from moesim.serve.terms import mtp_of, overheads
from tests.test_serve_golden import surface


def build(serving: dict, gpn: int, nodes: int = 1):
    raw = {"seed": 9, "model": {"base": "mixtral-8x7b", "num_hidden_layers": 16},
           "cluster": {"gpu": "h100", "nodes": nodes, "gpus_per_node": gpn}, "serving": serving}
    s = scenario_from_dict(raw)
    dep = deployment_of(s)
    surf = {(r.name, m): surface(m, 0.004 if m == "decode" else 0.01, 2e-5 if m == "decode" else 6e-5, 3e-9)
            for r in dep.roles for m in ("prefill", "decode")}
    return s, dep, surf


def shaped(serving: dict, closed: int | None, rate: float, shape: str):
    """``build`` of ``serving`` with ``closed`` requests in flight (else Poisson arrivals at ``rate``), as one
    aggregated instance (``one``), two (``two``) or disaggregated prefill and decode sides (``disagg``)."""
    serving = {**serving, **({"load": {"concurrency": closed}} if closed
                             else {"arrival": {"kind": "poisson", "rate_per_s": rate}})}
    if shape == "two":
        return build({**serving, "deployment": {"kind": "aggregated", "ep_gpus": 2}}, 4)
    if shape == "disagg":
        return build({**serving, "deployment": {"kind": "disaggregated", "prefill": {"gpus": 2},
                                                "decode": {"gpus": 2}}}, 2, 2)
    return build(serving, 4)


def same(a, b) -> bool:
    if json.dumps(a.summary, sort_keys=True) != json.dumps(b.summary, sort_keys=True):
        return False
    return all(np.array_equal(np.asarray(x[k]), np.asarray(y[k]), equal_nan=x[k].dtype.kind == "f")
               for x, y in ((a.requests, b.requests), (a.timeline, b.timeline)) for k in x)


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.2, 60), closed=st.sampled_from([None, 2, 9, 40]), isl=st.integers(50, 6000),
       osl=st.integers(2, 400), policy=st.sampled_from(["prefill_first", "alternate", "mixed"]),
       batch=st.sampled_from([4, 16, 256]), shape=st.sampled_from(["one", "two", "disagg"]),
       admission=st.sampled_from(["optimistic", "guaranteed_no_evict"]), host=st.sampled_from([0.0, 0.002]),
       request_s=st.sampled_from([0.0, 0.015]))
def test_spans_change_no_output(rate, closed, isl, osl, policy, batch, shape, admission, host, request_s):
    serving = {"requests": 80, "input_tokens": {"kind": "random", "value": isl, "range_ratio": 0.5},
               "output_tokens": {"kind": "random", "value": osl, "range_ratio": 0.3},
               "scheduler": {"policy": policy, "max_batch": batch, "admission": admission,
                             "kv_memory_fraction": 0.3},
               "overheads": {"host_s": host, "request_s": request_s, "handoff_s": 0.003}}
    s, dep, surf = shaped(serving, closed, rate, shape)
    req = requests_of(s)
    assert same(simulate_serving(s, dep, req, surf), simulate_serving(s, dep, req, surf, spans=False))


def test_a_light_load_runs_most_decode_steps_in_spans_and_fewer_events():
    s, dep, surf = build({"arrival": {"kind": "poisson", "rate_per_s": 0.5}, "requests": 40,
                          "output_tokens": {"kind": "constant", "value": 200}}, gpn=1)
    runs = {}
    for spans in (True, False):
        sim = ServeSim(dep, surf, requests_of(s), prefix_hit(s, dep), mtp_of(s.serving), np.random.default_rng(1),
                       None, None, overheads(s.serving), spans)
        sim.run()
        runs[spans] = (sim, sim.env._eid)  # SimPy's event counter: events scheduled
    on, off = runs[True][0], runs[False][0]
    decode_steps = sum(1 for r in off.log.rows if r[4] == 1)
    assert on.span_steps >= 0.9 * decode_steps and off.span_steps == 0
    assert len(on.log.rows) == len(off.log.rows)
    assert next(runs[True][1]) * 10 < next(runs[False][1])


def test_columns_to_csv_writes_what_the_csv_module_writes():
    from moesim.util.files import columns_to_csv, to_csv
    cols = {"t": np.array([1.5, np.nan, 3.0, 1e-30]), "n": np.array([1, 2, 3, 4]),
            "kind": np.array(["prefill", "decode", "mixed", "decode"], dtype=object), "ok": np.array([1, 0, 1, 1]) > 0}
    rows = lambda c: to_csv([{k: c[k][i] for k in c} for i in range(4)])  # noqa: E731
    assert columns_to_csv(cols) == rows(cols) and columns_to_csv(cols).splitlines()[2] == ",2,decode,False"
    cols["kind"][1] = 'a "quoted", cell'  # the csv module quotes it
    assert columns_to_csv(cols) == rows(cols) and '"a ""quoted"", cell"' in columns_to_csv(cols)


def test_the_surface_fingerprint_leaves_out_what_never_times_an_iteration(tmp_path):
    """Surfaces are keyed by the code that times an iteration: an edit to the request-level serving DES, the
    planner or an executor keeps the cache; an edit to the surface builder or a cost function renews it."""
    import shutil

    from moesim.util.fingerprint import PACKAGE, code_fingerprint
    root = tmp_path / "moesim"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint(root)
    for kept in ("serve/sim.py", "serve/spans.py", "serve/guard.py", "plan/search.py", "exec/local.py"):
        (root / kept).write_text((root / kept).read_text() + "\n# edited\n")
    assert code_fingerprint.__wrapped__(root) == before
    (root / "serve/surface.py").write_text((root / "serve/surface.py").read_text() + "\n# edited\n")
    assert code_fingerprint.__wrapped__(root) != before


def test_a_span_stops_where_its_own_finish_wakes_an_idle_instance():
    """Closed loop, disaggregated: a decode finish sends the next request to the idle prefill side, which acts
    at once; the decode side's next span must end before that prefill's hand-over (hypothesis found this)."""
    serving = {"requests": 80, "input_tokens": {"kind": "random", "value": 50, "range_ratio": 0.5},
               "output_tokens": {"kind": "random", "value": 7, "range_ratio": 0.3},
               "scheduler": {"max_batch": 4, "kv_memory_fraction": 0.3}, "load": {"concurrency": 2},
               "overheads": {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.003},
               "deployment": {"kind": "disaggregated", "prefill": {"gpus": 2}, "decode": {"gpus": 2}}}
    s, dep, surf = build(serving, 2, 2)
    req = requests_of(s)
    assert same(simulate_serving(s, dep, req, surf), simulate_serving(s, dep, req, surf, spans=False))


def test_a_span_lands_on_its_end_when_the_sum_rounds_past_it():
    """The case seed 2 of bench/seed_rotation.py found: 0.015694390513808082 + d rounds half to even past
    0.2856945684587931 for every d, so one delay cannot reach it; the second (exact) one does."""
    now, end = 0.015694390513808082, 0.2856945684587931
    d = exact_delay(now, end)
    assert now + d < end and (now + d) + (end - (now + d)) == end
    serving = {"requests": 80, "input_tokens": {"kind": "random", "value": 50, "range_ratio": 0.5},
               "output_tokens": {"kind": "random", "value": 184, "range_ratio": 0.3},
               "scheduler": {"policy": "prefill_first", "max_batch": 16, "admission": "optimistic",
                             "kv_memory_fraction": 0.3},
               "overheads": {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.003}}
    s, dep, surf = shaped(serving, 40, 1.0, "one")
    req = requests_of(s)
    assert same(simulate_serving(s, dep, req, surf), simulate_serving(s, dep, req, surf, spans=False))


@given(st.floats(0, 1e4), st.floats(0, 1e4))
def test_one_or_two_delays_reach_any_later_float(now, gap):
    end = now + gap
    t = now + exact_delay(now, end)
    assert t <= end and (t == end or t + (end - t) == end)
