"""Profile fits (no torch): exact recovery on synthetic data, interpolation, and the shipped measured profile
refitted deterministically from its stored points, with its stored fit errors and validation bounds."""

import json

import numpy as np
import pytest

from moesim.config import catalog
from moesim.hw.costs.measured import PIECES, Piece, Profile, fit_document, fit_terms
from moesim.model.layers import LAYER_KINDS
from moesim.studies.validation import predict_all, summarize_errors

SHIPPED = catalog.profile_dir() / "cpu-ref.json"


def test_fit_recovers_known_coefficients():
    pts = [{"tokens": t, "hidden": h, "experts": e, "median_s": 2e-5 + 3e-11 * t * h * e + 4e-9 * t * e}
           for t in (16, 64, 256, 1024) for h, e in ((256, 16), (512, 64), (1024, 64), (512, 128))]
    coef = fit_terms(pts, PIECES["router"][2])  # no dtype: one coefficient set
    assert coef == pytest.approx([2e-5, 3e-11, 4e-9, 0.0], rel=1e-6, abs=1e-15)


def test_fit_never_returns_negative_coefficients():
    rng = np.random.default_rng(0)
    pts = [{"copies": c, "hidden": 256, "median_s": 1e-5 + 1e-10 * c * 256 * (1 + 0.3 * rng.standard_normal())}
           for c in (64, 128, 512, 2048, 8192, 32768)]
    assert (fit_terms(pts, PIECES["permute"][2]) >= 0).all()


def test_interpolation_is_exact_on_the_grid_and_log_linear_between():
    pts = [{"tokens": t, "hidden": 64, "inter": 64, "dtype": "float32", "median_s": 1e-6 * t} for t in (1, 4, 16)]
    p = Piece("expert", pts, {"float32": np.zeros(4)})
    q = {"hidden": 64, "inter": 64, "dtype": "float32"}
    assert p.predict({**q, "tokens": 4}) == (pytest.approx(4e-6), "interpolated")
    assert p.predict({**q, "tokens": 8})[0] == pytest.approx(8e-6)  # a power law is exact in log-log
    assert p.predict({**q, "tokens": 32})[1] == "parametric"  # outside the range
    assert p.predict({**q, "hidden": 128, "tokens": 4})[1] == "parametric"  # shape not measured


def test_shipped_profile_refits_to_its_stored_coefficients_and_errors():
    doc = json.loads(SHIPPED.read_text())
    assert doc["provenance"]["label"] == "measured"
    for key in ("device_name", "torch", "date_utc", "grid", "threads", "host", "command"):
        assert doc["provenance"][key] not in (None, "")
    refit = fit_document({**doc, "pieces": {k: {"points": v["points"]} for k, v in doc["pieces"].items()}})
    for name, body in doc["pieces"].items():
        for dtype, coef in body["coef"].items():
            assert refit["pieces"][name]["coef"][dtype] == pytest.approx(coef, rel=1e-9, abs=1e-18)
        for kind, err in body["fit_error_percent"].items():
            assert refit["pieces"][name]["fit_error_percent"][kind] == pytest.approx(err, rel=1e-9)
    stored = Profile.from_doc(doc)
    again = Profile.from_doc(doc, refit=True)
    for name in stored.pieces:
        for dtype, coef in stored.pieces[name].coef.items():
            assert again.pieces[name].coef[dtype] == pytest.approx(coef, rel=1e-9, abs=1e-18)


def test_shipped_profile_fit_errors_within_documented_bounds():
    doc = json.loads(SHIPPED.read_text())
    for name, body in doc["pieces"].items():
        err = body["fit_error_percent"]
        assert err["interpolation_leave_one_out"]["mape"] <= 25.0, name
        assert err["parametric"]["mape"] <= 35.0, name


def test_held_out_end_to_end_error_on_stored_measurements():
    """The issue's target: end-to-end MoE layer MAPE <= 10% on held-out CPU configurations."""
    stored = json.loads(SHIPPED.with_name("cpu-ref.validation.json").read_text())
    errors = summarize_errors(predict_all(str(SHIPPED), stored))
    assert errors["layer (end to end)"]["mape"] <= 10.0
    # no target in the issue for the 2-process layer; the bound records what the stored data shows (15.7%)
    assert errors["ep layer, 2 processes (end to end)"]["mape"] <= 25.0
    # attention cores off the grid (length, batch, head count): stored data shows 15.6% / 15.4%
    assert errors["attention prefill"]["mape"] <= 25.0 and errors["attention decode"]["mape"] <= 25.0


def test_whole_model_on_a_measured_profile_times_the_attention_core_from_it():
    from moesim.hw.costs.measured import attention_core_fn
    from moesim.hw.costs.roofline import ComputeCosts
    from moesim.ir.blocks import attention_time
    from moesim.iteration.scenario import scenario_from_dict

    s = scenario_from_dict({"model": {"name": "m", "hidden_size": 512, "moe_intermediate_size": 256,
                                      "n_routed_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2,
                                      "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 64,
                                      "vocab_size": 1000},
                            "cluster": {"gpu": "cpu-ref", "nodes": 1, "gpus_per_node": 2},
                            "workload": {"tokens_per_gpu": 512, "context_tokens": 512, "scope": "whole_model"}})
    prof = Profile.load(SHIPPED)
    core = attention_core_fn(prof, s.model, LAYER_KINDS.get("mha"))
    t = np.array([512.0])
    want = prof.time("attn_prefill", {"tokens": 512, "seq": 512, "heads": 8, "head_dim": 64, "dtype": prof.dtype})
    assert core(t, False, 512)[0] == pytest.approx(want)
    c = ComputeCosts.from_gpu(s.cluster.gpu, "bf16")
    measured = attention_time(t, s.model, c, False, 512, core_fn=core)[0]
    roofline = attention_time(t, s.model, c, False, 512)[0]
    assert measured != roofline


def test_a_scenario_runs_on_the_measured_profile(small_v3):
    from moesim import api
    from moesim.iteration.scenario import scenario_from_dict

    small_v3["cluster"]["gpu"] = "cpu-ref"
    s = scenario_from_dict(small_v3)
    assert s.cluster.gpu_profile and s.cluster.gpu_profile.endswith("cpu-ref.json")
    res = api.run_scenario(s).doc
    assert res["compute_costs"].startswith("measured profile cpu-ref")
    assert res["cost_sources"]["nvlink_bandwidth"].startswith("measured")
    assert res["cost_sources"]["nic_bandwidth"].startswith("estimated")
    assert res["iteration_time_s"] > 0


@pytest.mark.slow
def test_validate_command_reproduces_the_published_figures_docs_quote(tmp_path):
    """``moesim validate --json`` against the published figures docs/calibration.md quotes (DeepEP's normal
    and low-latency kernels, DeepSeek's serving overview), each within the error printed there plus a
    margin, and the held-out cpu-ref layers within the MAPE docs/calibration.md reports."""
    import json

    from click.testing import CliRunner

    from moesim.cli.main import main
    from moesim.present.report_validation import tables, write_report

    r = CliRunner().invoke(main, ["validate", "--profile", "cpu-ref", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    serving = {x["mode"]: x for x in doc["deepseek_serving"]}
    assert serving["prefill"]["published_tokens_per_s_per_node"] == 73700
    assert serving["decode"]["published_tokens_per_s_per_node"] == 14800
    assert abs(serving["prefill"]["error_percent"]) < 10 and abs(serving["decode"]["error_percent"]) < 10
    normal = [x for x in doc["deepep"] if x["variant"] == "catalogue"]
    assert [(x["type"], x["ep"]) for x in normal] == [("intranode", 8), ("internode", 16), ("internode", 32),
                                                      ("internode", 64)]
    for x in normal:  # docs/calibration.md: within -15% .. +27%
        for k in ("dispatch", "combine"):
            assert -0.2 < x[f"{k}_sim_GBps"] / x[f"{k}_published_GBps"] - 1 < 0.3, x
    for x in doc["deepep_low_latency"]:  # docs/calibration.md: -26% .. -3%
        for k in ("dispatch", "combine"):
            assert -0.3 < x[f"{k}_sim_us"] / x[f"{k}_published_us"] - 1 < 0.05, x
    assert doc["errors"]["layer (end to end)"]["mape"] < 15  # percent
    text = tables(doc["rows"], doc["errors"], doc["deepep"], doc["deepseek_serving"], doc["deepep_low_latency"])
    assert "layer (end to end)" in text and "DeepEP" in text
    write_report(tmp_path, "cpu-ref", doc["rows"], doc["errors"], doc["deepep"], "a test", None,
                 doc["deepseek_serving"], doc["deepep_low_latency"])  # what -o writes, from the same figures
    assert text in (tmp_path / "README.md").read_text(encoding="utf-8")
    assert (tmp_path / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["validate", "--profile", "nope"])
    assert bad.exit_code == 2 and "cpu-ref" in bad.output
