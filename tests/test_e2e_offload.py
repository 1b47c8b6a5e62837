"""Local offloaded inference end to end (``moesim validate offload``): KTransformers' published DeepSeek-V3 rows
as data, one converter, the engine's terms fitted on half the rows, the surrogate checked against the DES."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.config.catalog import OFFLOAD_ENGINES
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.moe import BYTES_PER_PARAM
from moesim.offload.run import run_offload
from moesim.studies.e2e import ktransformers, offload, offload_fit


def test_rows_convert_as_the_source_describes_and_unstated_placements_are_refused():
    rows = ktransformers.read_rows()
    assert len(rows) == 38
    why = {i: ktransformers.why_not(r) for i, r in enumerate(rows, start=1)}
    assert {i for i, w in why.items() if w} == {9, 10}  # llama.cpp: its GPU layers are not stated
    # row 7: V0.2, one socket, 8 experts, 500-token prompt, prefill: 54.21 tokens/s
    sc = ktransformers.scenario(rows[6], 7)
    assert ktransformers.measured(rows[6]) == 54.21 and ktransformers.group(rows[6]).endswith("1-socket/prefill")
    assert sc["model"] == {"base": "deepseek-v3", "weight_dtype": "q4_k_m", "num_experts_per_tok": 8}
    assert sc["cluster"]["host"] == "ktransformers-6454s-4090d" and sc["cluster"]["gpu"] == "rtx-4090d"
    assert sc["workload"] == {"mode": "prefill", "tokens_per_gpu": 500, "context_tokens": 500}
    assert sc["offload"]["plan"] == "host" and sc["offload"]["miss"] == "cpu"
    # row 38: V0.2.1, both sockets, 7678-token prompt, 300-token answer: decode at 7678 + 150
    dec = ktransformers.scenario(rows[37], 38)
    assert dec["workload"] == {"mode": "decode", "tokens_per_gpu": 1, "context_tokens": 7828}
    assert dec["cluster"]["host"] == "ktransformers-2x6454s"
    for i, r in enumerate(rows, start=1):  # every convertible row is a valid scenario
        if not why[i]:
            scenario_from_dict(ktransformers.scenario(r, i))


def test_q4_k_m_counts_its_blocks():
    # gate, up: Q4_K (144 bytes per 256 weights); down: Q6_K (210 per 256) on half the layers, Q4_K on the rest
    assert BYTES_PER_PARAM["q4_k_m"] * 8 == pytest.approx((2 * 144 + (210 + 144) / 2) / 3 / 256 * 8)
    assert BYTES_PER_PARAM["q8_0"] == 34 / 32


def _decode(**off):
    sc = ktransformers.scenario(ktransformers.read_rows()[1], 2)  # V0.2, both sockets, 6 experts, decode
    sc = offload_fit.with_terms(sc, {"cpu_memory_efficiency": 0.5, "cpu_gemm_efficiency": 0.5, **off})
    sc["offload"]["steps"] = 2
    return run_offload(scenario_from_dict(sc))


def test_host_sync_is_one_wait_per_moe_layer_with_cpu_experts_by_hand():
    base, synced = _decode(layer_sync_s=0.0), _decode(layer_sync_s=0.002)
    # every routed expert runs on the CPU, whose branch is each layer's longest: 58 MoE layers x 2 ms per step
    assert synced.summary["time_per_token_s"] - base.summary["time_per_token_s"] == pytest.approx(58 * 0.002)
    names = synced.records.names[0]
    assert names.index("host_sync") < names.index("cpu_experts")
    assert "host_sync" not in base.records.names[0]


def test_the_engine_names_its_fitted_terms_and_an_explicit_value_wins():
    fitted = json.loads(OFFLOAD_ENGINES.read_text(encoding="utf-8"))["engines"]["ktransformers"]
    sc = ktransformers.scenario(ktransformers.read_rows()[1], 2)
    s = scenario_from_dict(sc)
    assert s.offload.layer_sync_s == fitted["layer_sync_s"]
    assert s.offload.cpu_memory_efficiency == fitted["cpu_memory_efficiency"]
    s = scenario_from_dict({**sc, "offload": {**sc["offload"], "layer_sync_s": 0.5}})
    assert s.offload.layer_sync_s == 0.5 and s.offload.cpu_gemm_efficiency == fitted["cpu_gemm_efficiency"]
    assert scenario_from_dict(offload_fit.with_terms(sc, {})).offload.layer_sync_s is None


def test_the_surrogate_is_the_simulator_on_prefill_and_decode_rows():
    """Rows 1 (prefill, 500 tokens: calls of many sizes), 2 (decode, 4 steps here) and 11 (a 2-token prefill,
    eager), in both forms of a CPU call."""
    rows = ktransformers.read_rows()
    x = {"cpu_memory_efficiency": 0.7, "cpu_gemm_efficiency": 0.3, "layer_sync_s": 3e-4, "kernel_launch_s": 2e-5}
    for i in (1, 2, 11):
        sc = ktransformers.scenario(rows[i - 1], i)
        sc["offload"]["steps"] = 4
        row = offload_fit.coefficients(sc, offload.simulate)
        for overlap in (False, True):
            xo = {**x, "cpu_overlap": overlap}
            assert offload_fit.tokens_per_s(row, xo) == pytest.approx(
                1 / offload.seconds(offload_fit.with_terms(sc, xo)), rel=1e-6)


def test_a_roofline_call_takes_the_longer_of_stream_and_compute_by_hand():
    from moesim.offload.tiers import MissCosts
    sc = offload_fit.with_terms(ktransformers.scenario(ktransformers.read_rows()[1], 2),
                                {"cpu_memory_efficiency": 0.5, "cpu_gemm_efficiency": 0.25})
    s = scenario_from_dict(sc)
    h, eb = s.cluster.host, 44040192 * BYTES_PER_PARAM["q4_k_m"]  # 3 x 7168 x 2048 weights
    mem, per_tok = eb / (h.dram_bandwidth * 0.5), 2 * 44040192 / (h.cpu_flops * 0.25)
    tok = np.array([1, 100])
    summed = MissCosts(s, eb).cpu_expert_s(tok)
    assert summed == pytest.approx(h.cpu_expert_overhead + mem + tok * per_tok)
    s2 = scenario_from_dict({**sc, "offload": {**sc["offload"], "cpu_overlap": True}})
    assert MissCosts(s2, eb).cpu_expert_s(tok) == pytest.approx(h.cpu_expert_overhead + np.maximum(mem, tok * per_tok))


def test_eager_prefill_launches_every_kernel_and_decode_replays_a_graph():
    rows = ktransformers.read_rows()
    for i, eager in ((11, True), (12, False)):  # the 2-token prefill; its decode
        sc = ktransformers.scenario(rows[i - 1], i)
        sc["offload"]["steps"] = 2
        assert sc["runtime"]["launch"] == ("eager" if eager else "cuda_graph")
        base = offload.seconds(offload_fit.with_terms(sc, {"kernel_launch_s": 0.0}))
        more = offload.seconds(offload_fit.with_terms(sc, {"kernel_launch_s": 1e-5}))
        # DeepSeek-V3: 61 blocks x 7 + 3 dense FFNs x 3 + 58 MoE layers x 10 + the head = 1,017 kernels a pass
        assert more - base == pytest.approx(1017e-5 / 2 if eager else 0.0, abs=1e-12)


def test_refit_is_deterministic_and_the_shipped_terms_are_its_output():
    base = json.loads(offload.BASE.read_text(encoding="utf-8"))
    doc = offload_fit.refit(base)
    assert doc == offload_fit.refit(base) == json.loads(OFFLOAD_ENGINES.read_text(encoding="utf-8"))
    assert set(doc["fit_rows"]).isdisjoint(doc["test_rows"]) and len(doc["fit_rows"]) == 18
    groups = {r["group"] for r in base["rows"]}
    assert all({r["row"] for r in base["rows"] if r["group"] == g} & set(doc["test_rows"]) for g in groups)
    x = doc["engines"]["ktransformers"]
    assert 0.05 < x["cpu_memory_efficiency"] < 1 and 0.05 < x["cpu_gemm_efficiency"] < 1  # inside the bounds
    assert doc["surrogate_errors"]["test"]["mape"] < doc["surrogate_errors"]["host estimates"]["mape"]
    # the form kept is the one that fits the fit rows better; both are reported
    kept = "roofline" if x["cpu_overlap"] else "sum"
    assert doc["forms"][kept]["fit"]["mape"] <= max(f["fit"]["mape"] for f in doc["forms"].values())


def test_validate_offload_cli_rows_by_hand(monkeypatch):
    monkeypatch.setattr(offload, "seconds", lambda sc: 0.1)  # 10 tokens/s for every row
    r = CliRunner().invoke(main, ["validate", "offload", "--only", "7,8,9", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [x["row"] for x in doc["rows"]] == [7, 8]
    assert doc["rows"][0]["signed_error"] == pytest.approx(10 / 54.21 - 1)
    assert doc["rows"][1]["signed_error"] == pytest.approx(10 / 8.73 - 1)
    assert doc["skipped"][0]["row"] == 9 and "not stated" in doc["skipped"][0]["why"]
    text = CliRunner().invoke(main, ["validate", "offload", "--only", "8"]).stdout
    assert "1-socket/decode" in text and "+14.5%" in text
    bad = CliRunner().invoke(main, ["validate", "offload", "--only", "nothing"])
    assert bad.exit_code == 2 and "matches no row" in bad.output


def test_validate_offload_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setattr(offload, "seconds", lambda sc: 0.1)
    r = CliRunner().invoke(main, ["validate", "offload", "--only", "7,8", "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "rep" / "offload.json").read_text())
    assert [x["row"] for x in doc["rows"]] == [7, 8]
    assert (tmp_path / "rep" / "offload.png").stat().st_size > 1000
    assert "1-socket/decode" in (tmp_path / "rep" / "README.md").read_text()


def test_llama_cpp_flags_borrow_ktransformers_kernels_and_hand_off_but_not_its_launch_cost():
    fitted = json.loads(OFFLOAD_ENGINES.read_text(encoding="utf-8"))["engines"]
    sc = ktransformers.scenario(ktransformers.read_rows()[1], 2)
    off = {k: v for k, v in sc["offload"].items() if k not in ("plan", "cache", "miss", "engine")}
    s = scenario_from_dict({**sc, "offload": {**off, "llama_cpp": "-ngl 999 --cpu-moe"}, "runtime": {}})
    assert s.offload.engine == "llama.cpp" and s.offload.plan == "layers" and s.offload.miss == "cpu"
    assert s.offload.layer_sync_s == fitted["ktransformers"]["layer_sync_s"] and s.offload.cpu_overlap
    assert s.offload.cpu_memory_efficiency == fitted["ktransformers"]["cpu_memory_efficiency"]
    assert s.runtime.kernel_launch_s == 0.0 and "kernel_launch_s" not in fitted["llama.cpp"]
