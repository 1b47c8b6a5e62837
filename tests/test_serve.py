"""Serving DES: queueing checks with answers computed by hand, KV-memory bounds, disaggregated KV transfer,
MTP, workload generators and traces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from moesim.config.serving import PoissonArrival, ServingSpec
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import kv_bytes_per_token, memory_per_gpu
from moesim.serve import simulate_serving
from moesim.serve.deploy import deployment_of, kv_capacity_tokens_per_gpu
from moesim.serve.run import requests_of
from moesim.serve.surface import Surface
from moesim.serve.workload import Requests, generate, read_trace
from moesim.util.errors import ScenarioError


def scenario(serving: dict, nodes: int = 1, gpn: int = 1, layers: int = 4, gpu: str = "h200", **extra):
    raw = {"seed": 3, "model": {"base": "mixtral-8x7b", "num_hidden_layers": layers},
           "cluster": {"gpu": gpu, "nodes": nodes, "gpus_per_node": gpn}, "serving": serving, **extra}
    return scenario_from_dict(raw)


def flat(mode: str, seconds: float) -> Surface:
    """A surface whose every iteration takes ``seconds``."""
    return Surface(mode, (1,), (1,), ((seconds,),), ((1.0,),))


def sim(s, prefill_s=0.1, decode_s=0.02, req=None, surfaces=None):
    dep = deployment_of(s)
    req = req if req is not None else requests_of(s)
    surf = surfaces or {(r.name, m): flat(m, prefill_s if m == "prefill" else decode_s)
                        for r in dep.roles for m in ("prefill", "decode")}
    return simulate_serving(s, dep, req, surf)


def test_md1_mean_wait_matches_pollaczek_khinchine():
    # batch size 1, one output token: each request is one prefill of D seconds, service deterministic.
    # P-K for M/D/1: Wq = rho * D / (2 (1 - rho)); TTFT = Wq + D.
    d, lam = 0.1, 5.0  # rho = 0.5
    s = scenario({"arrival": {"kind": "poisson", "rate_per_s": lam}, "requests": 40000,
                  "output_tokens": {"kind": "constant", "value": 1}, "scheduler": {"max_batch": 1}})
    res = sim(s, prefill_s=d)
    rho = lam * d
    expect = rho * d / (2 * (1 - rho)) + d
    assert res.summary["ttft_s"]["mean"] == pytest.approx(expect, rel=0.03)


def test_deterministic_arrivals_give_ttft_and_tpot_from_the_iteration_times():
    s = scenario({"arrival": {"kind": "constant", "rate_per_s": 1.0}, "requests": 20,
                  "input_tokens": {"kind": "constant", "value": 100},
                  "output_tokens": {"kind": "constant", "value": 5}})
    res = sim(s, prefill_s=0.1, decode_s=0.02)
    t = res.requests
    assert np.allclose(t["ttft_s"], 0.1)
    assert np.allclose(t["tpot_s"], 0.02)  # 4 decode steps after the first token
    assert np.allclose(t["e2e_s"], 0.1 + 4 * 0.02)
    assert res.summary["throughput"]["requests_per_s"] == pytest.approx(20 / (19 + 0.18))


def test_two_requests_at_once_share_a_prefill_and_the_decode_batch():
    s = scenario({"requests": 2})
    both = Requests(np.zeros(2), np.array([1024, 1024]), np.array([3, 3]), "test")
    res = sim(s, prefill_s=0.1, decode_s=0.02, req=both)
    # both admitted in one prefill iteration (budget 8192 >= 2 x 1024), then decoded together
    assert np.allclose(res.requests["ttft_s"], 0.1)
    assert np.allclose(res.requests["e2e_s"], 0.1 + 2 * 0.02)


def test_kv_capacity_is_the_memory_models_and_bounds_the_batch():
    s = scenario({"arrival": {"kind": "constant", "rate_per_s": 1e6}, "requests": 400,
                  "input_tokens": {"kind": "constant", "value": 8000},
                  "output_tokens": {"kind": "constant", "value": 400},
                  "scheduler": {"max_batch": 1024, "kv_memory_fraction": 1.0}}, gpu="h100", layers=8)
    dep = deployment_of(s)
    role = dep.role("aggregated")
    per_gpu = kv_capacity_tokens_per_gpu(role.scenario, 1024, 1.0)
    assert role.kv_tokens == math.floor(per_gpu)
    # memory model: that many KV tokens (as sequences of one token) exactly fill the HBM
    probe = role.scenario.model_copy(update={"workload": role.scenario.workload.model_copy(
        update={"mode": "decode", "tokens_per_gpu": 1024, "context_tokens": int(per_gpu // 1024)})})
    mem = memory_per_gpu(probe)
    assert mem["fits"] and mem["capacity_bytes"] - mem["total_bytes"] < 1024 * 8 * kv_bytes_per_token(s.model) * 8
    res = sim(s)
    tl = res.timeline
    first_decode = int(np.argmax(tl["kind"] == "decode"))
    assert tl["running"][first_decode] == role.kv_tokens // 8000  # admitted while whole prompts fit
    assert tl["kv_used_tokens"].max() <= role.kv_tokens
    assert res.summary["preemptions"] > 0  # growing sequences overflow and are recomputed
    assert np.isfinite(res.requests["e2e_s"]).all()  # and every request still finishes


def test_disaggregated_kv_transfer_time_by_hand():
    # 2 nodes x 1 GPU: prefill on node 0, decode on node 1; the KV crosses node 0's NIC and node 1's NIC
    s = scenario({"arrival": {"kind": "constant", "rate_per_s": 0.1}, "requests": 1,
                  "input_tokens": {"kind": "constant", "value": 1000},
                  "output_tokens": {"kind": "constant", "value": 3},
                  "deployment": {"kind": "disaggregated", "prefill": {"gpus": 1}, "decode": {"gpus": 1}}},
                 nodes=2)
    res = sim(s, prefill_s=0.1, decode_s=0.02)
    nbytes = 1000 * kv_bytes_per_token(s.model) * s.model.num_hidden_layers
    nic = s.cluster.gpu.nic_bandwidth
    expect = nbytes / nic + s.cluster.gpu.nic_latency
    assert res.requests["kv_transfer_s"][0] == pytest.approx(expect, rel=1e-6)
    # the first token reaches the client with the KV cache, on the decode side (Dynamo, SGLang PD)
    assert res.requests["ttft_s"][0] == pytest.approx(0.1 + expect, rel=1e-6)
    assert res.requests["e2e_s"][0] == pytest.approx(0.1 + expect + 2 * 0.02, rel=1e-6)


def test_engine_overheads_by_hand():
    # isolated requests: TTFT = front end + prefill + one host pass; every decode step one host pass longer
    s = scenario({"arrival": {"kind": "constant", "rate_per_s": 1.0}, "requests": 10,
                  "input_tokens": {"kind": "constant", "value": 100},
                  "output_tokens": {"kind": "constant", "value": 5},
                  "overheads": {"host_s": 0.003, "request_s": 0.05}})
    t = sim(s, prefill_s=0.1, decode_s=0.02).requests
    assert np.allclose(t["ttft_s"], 0.05 + 0.1 + 0.003)
    assert np.allclose(t["tpot_s"], 0.02 + 0.003)
    # disaggregated: the hand-over's set-up before the KV transfer, on the way to the first token
    d = scenario({"arrival": {"kind": "constant", "rate_per_s": 0.1}, "requests": 1,
                  "input_tokens": {"kind": "constant", "value": 1000},
                  "output_tokens": {"kind": "constant", "value": 3}, "overheads": {"handoff_s": 0.2},
                  "deployment": {"kind": "disaggregated", "prefill": {"gpus": 1}, "decode": {"gpus": 1}}}, nodes=2)
    r = sim(d, prefill_s=0.1, decode_s=0.02).requests
    assert r["ttft_s"][0] == pytest.approx(0.1 + 0.2 + r["kv_transfer_s"][0], rel=1e-9)


def test_two_transfers_share_the_nic():
    s = scenario({"deployment": {"kind": "disaggregated", "prefill": {"gpus": 1}, "decode": {"gpus": 1}}},
                 nodes=2)
    both = Requests(np.zeros(2), np.array([1000, 1000]), np.array([2, 2]), "test")
    res = sim(s, prefill_s=0.1, decode_s=0.02, req=both)
    nbytes = 1000 * kv_bytes_per_token(s.model) * s.model.num_hidden_layers
    expect = 2 * nbytes / s.cluster.gpu.nic_bandwidth + s.cluster.gpu.nic_latency
    assert res.requests["kv_transfer_s"] == pytest.approx([expect, expect], rel=1e-6)


def test_mtp_emits_more_tokens_per_step():
    base = {"arrival": {"kind": "constant", "rate_per_s": 0.01}, "requests": 50,
            "output_tokens": {"kind": "constant", "value": 201}}
    plain = sim(scenario(base)).summary["tpot_s"]["mean"]
    spec = sim(scenario({**base, "mtp": {"draft_tokens": 1, "acceptance": 0.8, "draft_cost": 0.0}}))
    # each step emits 1 + Bernoulli(0.8) tokens: TPOT falls by about 1.8x
    assert plain / spec.summary["tpot_s"]["mean"] == pytest.approx(1.8, rel=0.05)
    never = sim(scenario({**base, "mtp": {"draft_tokens": 2, "acceptance": 0.0, "draft_cost": 0.0}}))
    assert never.summary["tpot_s"]["mean"] == pytest.approx(plain)


def test_several_ep_groups_split_the_stream():
    s = scenario({"arrival": {"kind": "poisson", "rate_per_s": 50}, "requests": 400,
                  "deployment": {"kind": "aggregated", "ep_gpus": 4}}, gpn=8)
    dep = deployment_of(s)
    assert dep.role("aggregated").instances == 2 and dep.role("aggregated").scenario.cluster.num_gpus == 4
    res = sim(s)
    assert {int(i) for i in res.timeline["instance"]} == {0, 1}


def test_same_seed_same_output():
    s = scenario({"arrival": {"kind": "gamma", "rate_per_s": 10, "cv": 3}, "requests": 300,
                  "input_tokens": {"kind": "lognormal", "mean": 500, "cv": 1.0},
                  "mtp": {"draft_tokens": 2, "acceptance": 0.7}})
    a, b = sim(s).summary, sim(s).summary
    assert a == b


def test_length_and_arrival_laws():
    spec = ServingSpec.model_validate({"arrival": {"kind": "gamma", "rate_per_s": 4, "cv": 2}, "requests": 20000,
                                       "input_tokens": {"kind": "lognormal", "mean": 1000, "cv": 0.5}})
    req = generate(spec, np.random.default_rng(0))
    gaps = np.diff(req.arrival_s)
    assert gaps.mean() == pytest.approx(0.25, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.07)
    assert req.input_tokens.mean() == pytest.approx(1000, rel=0.03)


def test_trace_formats(tmp_path):
    (tmp_path / "a.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                    "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.1805900,396,109\n")
    (tmp_path / "m.jsonl").write_text('{"timestamp": 0, "input_length": 6955, "output_length": 52}\n'
                                      '{"timestamp": 1500, "input_length": 6472, "output_length": 26}\n')
    a, m = read_trace(tmp_path / "a.csv"), read_trace(tmp_path / "m.jsonl")
    assert a.arrival_s.tolist() == pytest.approx([0.0, 0.5]) and a.input_tokens.tolist() == [374, 396]
    assert m.arrival_s.tolist() == [0.0, 1.5] and m.output_tokens.tolist() == [52, 26]


@pytest.mark.parametrize("text,words", [("", "empty"), ("arrival_s,input_tokens\n1,2\n", "missing column"),
                                         ("arrival_s,input_tokens,output_tokens\n0,x,3\n", "line 2"),
                                         ('{"timestamp": 1}\n', "input_length")])
def test_bad_traces_are_one_clear_error(tmp_path, text, words):
    p = tmp_path / ("t.jsonl" if text.startswith("{") else "t.csv")
    p.write_text(text)
    with pytest.raises(ScenarioError, match=words):
        read_trace(p)


def test_request_longer_than_the_kv_cache_is_refused():
    from moesim.serve.run import check_fits

    s = scenario({"input_tokens": {"kind": "constant", "value": 100_000_000}, "requests": 2})
    with pytest.raises(ScenarioError, match="KV cache"):
        check_fits(deployment_of(s), requests_of(s))


def test_requests_stream_is_cut_by_duration():
    s = scenario({"arrival": {"kind": "constant", "rate_per_s": 10}, "requests": 1000, "duration_s": 2.0})
    req: Requests = requests_of(s)
    assert len(req) == 21


def test_surface_interpolation_error_on_held_out_points(tmp_path, monkeypatch):
    from moesim.exec import SerialExecutor
    from moesim.serve.surface import Grid, build_surfaces

    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path))
    s = scenario({}, gpn=8, layers=2, router={"stats": {"kind": "dirichlet", "concentration": 8.0}})
    inst = deployment_of(s).role("aggregated").scenario
    grids = [Grid("a/prefill", inst, "prefill", [256, 1024, 4096], [512, 2048], True),
             Grid("a/decode", inst, "decode", [1, 4, 16, 64, 256], [1024, 4096], True)]
    seen = []
    stored = {}
    surf = build_surfaces(grids, SerialExecutor(), True, lambda d, n: seen.append((d, n)),
                          lambda p, t: stored.setdefault(p, t))
    for k, v in surf.items():
        err = v.holdout_error()
        assert err["points"] >= 2 and err["max"] <= 0.03, (k, v.holdout)
        assert all(t not in v.tokens for t, *_ in v.holdout)  # held out: never a grid row
    assert seen[-1][0] == seen[-1][1] > 0
    for p, t in stored.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(t)
    again = []
    surf2 = build_surfaces(grids, SerialExecutor(), True, lambda d, n: again.append((d, n)))
    assert not again and surf2["a/decode"].time_s == surf["a/decode"].time_s  # read from the cache


class _StopAfter:
    """An executor that runs ``n`` token rows, then raises KeyboardInterrupt (Ctrl-C, or SIGTERM as moesim
    handles it); ``rows`` lists every row it ran."""

    def __init__(self, n):
        self.n, self.rows = n, []

    def run(self, fn, items):
        for item in items:
            if len(self.rows) == self.n:
                raise KeyboardInterrupt
            self.rows.append(item[1])
            yield item, fn(item)


def test_an_interrupted_build_keeps_its_finished_points_for_the_next(tmp_path, monkeypatch):
    from moesim.exec import SerialExecutor
    from moesim.serve.surface import Grid, build_surfaces
    from moesim.util.files import write_atomic

    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    s = scenario({}, gpn=8, layers=2, router={"stats": {"kind": "dirichlet", "concentration": 8.0}})
    inst = deployment_of(s).role("aggregated").scenario
    grids = [Grid("a/decode", inst, "decode", [1, 4, 16, 64], [1024, 4096], False)]
    first = _StopAfter(2)
    with pytest.raises(KeyboardInterrupt):
        build_surfaces(grids, first, True, None, write_atomic)
    partial = list((tmp_path / "cache" / "surfaces").glob("*.partial.json"))
    assert len(partial) == 1 and first.rows == [64, 16]  # the longest rows go first
    second = _StopAfter(99)
    surf = build_surfaces(grids, second, True, None, write_atomic)["a/decode"]
    assert second.rows == [4, 1]  # only the rows that had not finished
    assert not list((tmp_path / "cache" / "surfaces").glob("*.partial.json"))  # the whole surface replaces it
    whole = build_surfaces(grids, SerialExecutor(), False)["a/decode"]
    assert surf.time_s == whole.time_s  # the same floats as a build that was never interrupted


def test_a_damaged_partial_file_is_run_again(tmp_path):
    from moesim.serve.surface_cache import partial_path, partial_text, read_partial
    path = tmp_path / "k.json"
    partial_path(path).write_text(partial_text({(1, 8): (0.5, 1.0, 0.0), (4, 8): (0.7, 1.1, 0.0)}, "k"))
    assert read_partial(path, "k") == {(1, 8): (0.5, 1.0, 0.0), (4, 8): (0.7, 1.1, 0.0)}
    assert read_partial(path, "other key") == {}
    partial_path(path).write_text(partial_text({(1, 8): (float("nan"), 1.0, 0.0)}, "k"))
    assert read_partial(path, "k") == {}
    partial_path(path).write_text(partial_text({(1, 8): (0.5, 1.0, 0.0)}, "k").replace("0.5", "0.05"))
    assert read_partial(path, "k") == {}  # edited: the digest no longer holds


def test_surfaces_are_keyed_by_what_times_an_iteration_not_by_the_name_or_the_load():
    """Issue 32: a renamed scenario, or one served at another rate, length or SLO, reuses the surfaces;
    another seed or layout does not."""
    from moesim.serve.surface import Grid

    s = scenario({}, gpn=8, layers=2)
    inst = deployment_of(s).role("aggregated").scenario
    key = Grid("a/decode", inst, "decode", [1, 8], [1024], False).cache_key()

    def key_of(**update):
        return Grid("a/decode", inst.model_copy(update=update), "decode", [1, 8], [1024], False).cache_key()

    assert key_of(name="another name") == key
    served = key_of(serving=ServingSpec())
    assert key_of(serving=ServingSpec(requests=7, arrival=PoissonArrival(rate_per_s=9.0))) == served
    assert key_of(seed=inst.seed + 1) != key
    assert key_of(workload=inst.workload.model_copy(update={"micro_batches": 2})) != key
    assert Grid("a/decode", inst, "decode", [1, 16], [1024], False).cache_key() != key


FAST = ["--set", "model.num_hidden_layers=2", "--set", "serving.surface.holdout=false",
        "--set", "serving.surface.decode_batch=[1,8,64]", "--set", "serving.surface.prefill_tokens=[64,512,4096]"]


def test_serve_cli_on_the_shipped_trace_scenario_writes_every_output(tmp_path, monkeypatch):
    from pathlib import Path

    from click.testing import CliRunner

    from moesim.cli.main import main

    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    sc = Path(__file__).resolve().parent.parent / "scenarios" / "mixtral-8x7b-serve-trace-a100.yaml"
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["serve", str(sc), *FAST, "--set", "serving.requests=80", "-j", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "TTFT" in r.output and "goodput" in r.output and "iteration surfaces" in r.output
    doc = json.loads((out / "serve.json").read_text())
    assert doc["requests"] == 80 and doc["throughput_scope"] == "whole_model"
    assert (out / "requests.csv").read_text().count("\n") == 81
    assert "kv_utilisation" in (out / "timeline.csv").read_text().splitlines()[0]
    again = CliRunner().invoke(main, ["serve", str(sc), *FAST, "--set", "serving.requests=80", "--json"])
    assert json.loads(again.output) == doc  # same seed, same output (and the surfaces came from the cache)
    rep = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count('class="chart" data-spec=') == 5  # queue, batch, KV, TTFT, TPOT


@pytest.mark.parametrize("sets,words", [
    (["--set", "serving.arrival.rate_per_s=-3"], "serving.arrival.rate_per_s"),
    (["--rate", "0"], "--rate"),
    (["--set", "serving.deployment={kind: disaggregated}"], "needs prefill"),
    (["--set", "serving.deployment.ep_gpus=3"], "ep_gpus"),
    (["--set", "serving.arrival={kind: trace, path: nowhere.csv}"], "no such file"),
])
def test_serve_bad_input_is_one_line_exit_2(tmp_path, sets, words):
    from pathlib import Path

    from click.testing import CliRunner

    from moesim.cli.main import main

    sc = Path(__file__).resolve().parent.parent / "scenarios" / "deepseek-v3-serve-h800.yaml"
    r = CliRunner().invoke(main, ["serve", str(sc), *sets])
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", "arrival_s,input_tokens,output_tokens\n", "{not json\n"])
def test_serve_with_an_empty_or_malformed_trace_is_exit_2(tmp_path, text):
    from click.testing import CliRunner

    from moesim.cli.main import main

    (tmp_path / "t.jsonl").write_text(text)
    (tmp_path / "s.yaml").write_text("model: mixtral-8x7b\ncluster: {gpu: a100-80gb}\n"
                                     "serving: {arrival: {kind: trace, path: t.jsonl}}\n")
    r = CliRunner().invoke(main, ["serve", str(tmp_path / "s.yaml")])
    assert r.exit_code == 2 and "t.jsonl" in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("kind", ["aggregated", "disaggregated"])
def test_invariants_on_random_streams(kind):
    """Every request finishes with all its tokens; KV use never exceeds the capacity; TTFT >= a prefill."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    dep_spec = ({"kind": "aggregated", "ep_gpus": 1} if kind == "aggregated" else
                {"kind": "disaggregated", "prefill": {"gpus": 1}, "decode": {"gpus": 1}})
    s = scenario({"deployment": dep_spec, "scheduler": {"max_batch": 8, "token_budget": 512},
                  "mtp": {"draft_tokens": 1, "acceptance": 0.5}}, nodes=2)
    dep = deployment_of(s)
    small = [r.__class__(**{**r.__dict__, "kv_tokens": 3000.0}) for r in dep.roles]  # force preemption
    dep = dep.__class__(dep.kind, tuple(small), dep.world_gpus, dep.kv_bytes_per_token)

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.tuples(st.floats(0, 2), st.integers(1, 1500), st.integers(1, 300)), min_size=1, max_size=40))
    def check(reqs):
        t = np.sort(np.array([r[0] for r in reqs]))
        req = Requests(t, np.array([r[1] for r in reqs]), np.array([r[2] for r in reqs]), "h")
        surf = {(r.name, m): flat(m, 0.05 if m == "prefill" else 0.01)
                for r in dep.roles for m in ("prefill", "decode")}
        res = simulate_serving(s, dep, req, surf)
        assert np.isfinite(res.requests["e2e_s"]).all()
        assert (res.requests["ttft_s"] >= 0.05 - 1e-12).all()
        assert (res.timeline["kv_used_tokens"] <= 3000.0 + 1e-9).all()
        assert (res.requests["e2e_s"] >= res.requests["ttft_s"]).all()

    check()


def test_a_scenario_without_a_serving_section_takes_one_from_set_and_rate(tmp_path, monkeypatch):
    from pathlib import Path

    from click.testing import CliRunner

    from moesim.cli.main import main

    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path / "cache"))
    sc = Path(__file__).resolve().parent.parent / "scenarios" / "mixtral-8x7b-a100.yaml"
    r = CliRunner().invoke(main, ["serve", str(sc), "--set", "model.num_hidden_layers=2", "--rate", "4", "-j", "1",
                                  "--json", "--set", "serving={requests: 40, surface: {holdout: false, "
                                  "decode_batch: [1, 16, 256], prefill_tokens: [64, 1024, 8192]}}"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # progress goes to stderr
    assert doc["requests"] == 40 and doc["workload_source"].startswith("poisson")


def test_closed_loop_with_constant_iteration_times_gives_concurrency_over_latency():
    """4 requests in flight, 100-token prompts, 5 output tokens; every prefill takes 0.1 s and every decode
    step 0.02 s. The 4 are prefilled together (first tokens at 0.1 s), decode 4 steps together and finish at
    0.18 s, when the next 4 are sent: each request's latency is 0.18 s, and 40 requests take 10 rounds, so
    throughput is exactly concurrency / latency = 4 / 0.18 requests/s."""
    s = scenario({"load": {"concurrency": 4}, "requests": 40, "input_tokens": {"kind": "constant", "value": 100},
                  "output_tokens": {"kind": "constant", "value": 5}})
    res = sim(s, prefill_s=0.1, decode_s=0.02)
    t = res.requests
    assert np.allclose(t["e2e_s"], 0.18) and np.allclose(t["ttft_s"], 0.1)
    assert np.allclose(t["arrival_s"], np.repeat(np.arange(10) * 0.18, 4))
    assert res.summary["throughput"]["requests_per_s"] == pytest.approx(4 / 0.18, rel=1e-12)
    assert res.summary["workload_source"] == "closed loop: 4 requests in flight"


def test_closed_loop_never_has_more_requests_in_flight_than_its_concurrency():
    s = scenario({"load": {"concurrency": 3}, "requests": 60,
                  "input_tokens": {"kind": "random", "value": 400, "range_ratio": 0.8},
                  "output_tokens": {"kind": "random", "value": 20, "range_ratio": 0.5}})
    t = sim(s, prefill_s=0.05, decode_s=0.01).requests
    start, end = t["arrival_s"], t["arrival_s"] + t["e2e_s"]
    for x in np.concatenate([start, end]) + 1e-9:  # just after each event (end = arrival + e2e rounds)
        assert ((start <= x) & (end > x)).sum() <= 3
    assert 320 <= t["input_tokens"].min() and t["input_tokens"].max() <= 400
    assert 10 <= t["output_tokens"].min() and t["output_tokens"].max() <= 20


def test_random_lengths_follow_sglang_bench_serving_bounds():
    from moesim.config.serving import RandomLength
    from moesim.serve.workload import lengths

    x = lengths(RandomLength(value=1024, range_ratio=0.8), 20000, np.random.default_rng(0))
    assert x.min() == int(1024 * 0.8) and x.max() == 1024  # SGLang: randint(int(len * ratio), len + 1)
    assert x.mean() == pytest.approx((819 + 1024) / 2, rel=0.01)


def test_closed_loop_with_a_duration_is_refused():
    with pytest.raises(ScenarioError, match="closed-loop load runs `requests` requests"):
        scenario({"load": {"concurrency": 4}, "duration_s": 10})


def test_guaranteed_no_evict_never_preempts_and_admits_fewer():
    """TensorRT-LLM's default admission on the KV-bound case above: each request reserves its 8,000-token
    prompt and the 400 tokens it will generate, so the first decode batch is kv // 8,400 (not kv // 8,000) and
    no sequence is ever preempted; every request still finishes."""
    def run(admission):
        s = scenario({"arrival": {"kind": "constant", "rate_per_s": 1e6}, "requests": 400,
                      "input_tokens": {"kind": "constant", "value": 8000},
                      "output_tokens": {"kind": "constant", "value": 400},
                      "scheduler": {"max_batch": 1024, "kv_memory_fraction": 1.0, "admission": admission}},
                     gpu="h100", layers=8)
        return deployment_of(s).role("aggregated").kv_tokens, sim(s)
    kv, optimistic = run("optimistic")
    _, no_evict = run("guaranteed_no_evict")
    first = [int(np.argmax(r.timeline["kind"] == "decode")) for r in (optimistic, no_evict)]
    assert optimistic.timeline["running"][first[0]] == kv // 8000 and optimistic.summary["preemptions"] > 0
    assert no_evict.timeline["running"][first[1]] == kv // 8400
    assert no_evict.summary["preemptions"] == 0 and no_evict.requests["preemptions"].max() == 0
    assert np.isfinite(no_evict.requests["e2e_s"]).all()


def test_decode_batches_pad_to_the_captured_cuda_graph_sizes():
    """Decode steps cost 10 ms + 1 ms per sequence (a surface linear in the batch). Three sequences run at the
    captured size 4 (13 ms a step) with graphs of 1, 2, 4, 8; at their own size (12 ms) without; a batch above
    the largest captured size runs eagerly at its own size."""
    def run(graphs, n=3):
        s = scenario({"load": {"concurrency": n}, "requests": n,  # all sent at once: one prefill, then decode
                      "input_tokens": {"kind": "constant", "value": 100},
                      "output_tokens": {"kind": "constant", "value": 5},
                      "scheduler": {"cuda_graph_batches": graphs}})
        linear = Surface("decode", (1, 65), (1,), ((0.010,), (0.074,)), ((1.0,), (1.0,)))
        return sim(s, surfaces={("aggregated", "prefill"): flat("prefill", 0.1),
                                ("aggregated", "decode"): linear}).requests
    assert np.allclose(run([1, 2, 4, 8])["tpot_s"], 0.013) and np.allclose(run([])["tpot_s"], 0.012)
    assert np.allclose(run([1, 2])["tpot_s"], 0.012)


def test_cuda_graph_sizes_must_increase():
    with pytest.raises(ScenarioError, match="increasing order"):
        scenario({"scheduler": {"cuda_graph_batches": [4, 2]}})


def test_mtp_acceptance_per_draft_position_by_hand():
    """Two drafts, the first always accepted and the second never: every step emits exactly 2 tokens, so the
    198 output tokens after the first take 99 steps and TPOT is half the plain step; (1.0, 1.0): 3 a step,
    66 steps, a third."""
    base = {"arrival": {"kind": "constant", "rate_per_s": 0.01}, "requests": 5,
            "output_tokens": {"kind": "constant", "value": 199}}
    plain = sim(scenario(base)).summary["tpot_s"]["mean"]
    two = sim(scenario({**base, "mtp": {"draft_tokens": 2, "acceptance": [1.0, 0.0], "draft_cost": 0.0}}))
    assert two.summary["tpot_s"]["mean"] == pytest.approx(plain / 2, rel=1e-12)
    three = sim(scenario({**base, "mtp": {"draft_tokens": 2, "acceptance": [1.0, 1.0], "draft_cost": 0.0}}))
    assert three.summary["tpot_s"]["mean"] == pytest.approx(plain / 3, rel=1e-12)
    with pytest.raises(ScenarioError, match="one per draft position"):
        scenario({**base, "mtp": {"draft_tokens": 2, "acceptance": [0.9]}})


def test_attention_dp_balance_holds_new_prompts_by_hand():
    # 8 GPUs of data-parallel attention: 8 ranks. A second request arrives at 0.51 s while the first decodes
    # (0.02 s steps from 0.1 s): without the balance it is prefilled at the next step (0.52 s); with a
    # 3-iteration timeout and fewer waiting than ranks it waits 3 steps (0.58 s) first.
    two = Requests(np.array([0.0, 0.51]), np.array([100, 100]), np.array([100, 2]), "test")
    base = {"requests": 2, "scheduler": {"max_batch": 8}}
    free = sim(scenario(base, gpn=8), prefill_s=0.1, decode_s=0.02, req=two).requests["ttft_s"]
    held = sim(scenario({**base, "scheduler": {"max_batch": 8, "dp_balance_timeout_iters": 3}}, gpn=8),
               prefill_s=0.1, decode_s=0.02, req=two).requests["ttft_s"]
    assert free[1] == pytest.approx(0.62 - 0.51) and held[1] == pytest.approx(0.68 - 0.51)


def test_a_sides_own_scheduler_and_running_per_instance():
    s = scenario({"deployment": {"kind": "disaggregated", "prefill": {"gpus": 1, "scheduler": {"token_budget": 512}},
                                 "decode": {"gpus": 1, "scheduler": {"max_running": 3}}},
                  "scheduler": {"token_budget": 4096, "max_batch": 64}}, nodes=2)
    dep = deployment_of(s)
    assert dep.role("prefill").prefill_budget == 512 and dep.role("decode").max_running == 3
    assert dep.role("prefill").max_running == 64  # the rest from serving.scheduler
    five = Requests(np.zeros(5), np.full(5, 100), np.full(5, 50), "test")
    res = sim(s, prefill_s=0.01, decode_s=0.02, req=five)
    assert res.timeline["running"].max() <= 3  # the decode side never runs more than its 3
