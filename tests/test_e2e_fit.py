"""The engine terms fitted on measured rows (moesim.studies.e2e.fit, moesim.serve.terms): the surrogate by
hand, the fit recovering terms it was given, the shipped terms re-fitted from the shipped data files (CI
re-fits and re-checks them, no timing), and the terms as the serving DES spends them, by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.serve.terms import TERMS_FILE, fitted_terms, mtp_of, overheads
from moesim.studies.e2e import fit
from moesim.studies.e2e.fit import A0, BaseRow, fit_rows, leave_one_group_out, refit, surrogate
from moesim.studies.e2e.run import BASE, INFERENCEX, base_row, rows_of

ZERO = {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.0, "mtp_acceptance": A0}


def _row(i=1, engine="sglang", disagg=False, mtp=False, ttft=0.1, tpot=0.01, tput=100.0, out=900.0, group=None,
         drafts=1):
    base = {"ttft_s": ttft, "tpot_s": tpot, "tokens_per_s_per_gpu": tput}
    return BaseRow(i, group or f"h200/{engine}/{'disagg' if disagg else 'agg'}/{'mtp' if mtp else 'no-mtp'}",
                   engine, disagg, mtp, out, drafts if mtp else 0, base, dict(base))


def test_the_surrogate_by_hand():
    two = _row(mtp=True, drafts=2)
    t2 = {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.0, "mtp_acceptance": 0.5}
    assert surrogate(two, t2)["tpot_s"] == pytest.approx(0.01 * (1 + 0.85 + 0.85 ** 2) / (1 + 0.5 + 0.25))
    r = _row(mtp=True, disagg=True)
    t = {"host_s": 0.002, "request_s": 0.05, "handoff_s": 0.1, "mtp_acceptance": 0.7}
    p = surrogate(r, t)
    assert p["tpot_s"] == pytest.approx((0.01 * 1.85 + 0.002) / 1.7)
    assert p["ttft_s"] == pytest.approx(0.1 + 0.05 + 0.002 + 0.1)
    l0, l1 = 0.1 + 899 * 0.01, p["ttft_s"] + 899 * p["tpot_s"]
    assert p["tokens_per_s_per_gpu"] == pytest.approx(100.0 * l0 / l1)
    assert surrogate(r, ZERO) == pytest.approx(r.base)  # no terms: the base run itself


def test_the_fit_recovers_terms_it_was_given():
    truth = {"sglang": {"host_s": 0.001, "request_s": 0.04, "handoff_s": 0.2, "mtp_acceptance": 0.7},
             "trtllm": {"host_s": 0.004, "request_s": 0.08, "handoff_s": 0.5, "mtp_acceptance": 0.6}}
    rows = []
    for i, (eng, dis, mtp, tt, tp) in enumerate([(e, d, m, tt, tp) for e in fit.ENGINES for d in (False, True)
                                                 for m in (False, True) for tt, tp in ((0.05, 0.008), (0.3, 0.02))]):
        r = _row(i + 1, eng, dis, mtp, tt, tp)
        rows.append(BaseRow(r.index, r.group, eng, dis, mtp, r.mean_output, r.drafts, r.base,
                            surrogate(r, truth[eng])))
    got = fit.fit(rows)
    for eng in fit.ENGINES:
        for k, v in truth[eng].items():
            assert got[eng][k] == pytest.approx(v, rel=1e-3, abs=1e-6), (eng, k)


def test_fit_rows_alternate_within_each_group():
    rows = [_row(i, group="a" if i in (1, 2, 5) else "b") for i in range(1, 7)]
    assert fit_rows(rows) == {1, 5, 3, 6}


def test_the_shipped_terms_refit_from_the_shipped_data_files():
    """CI's re-fit: the base run and the measured rows in the package give exactly the shipped terms."""
    shipped = fitted_terms(TERMS_FILE)
    again = refit(json.loads(BASE.read_text(encoding="utf-8")))
    assert again["engines"] == shipped["engines"] and again["fit_rows"] == shipped["fit_rows"]
    assert again["pooled"] == shipped["pooled"]
    for g, st in shipped["leave_one_group_out"].items():
        for m in ("ttft_s", "tpot_s", "tokens_per_s_per_gpu"):
            assert again["leave_one_group_out"][g][m] == pytest.approx(st[m])
    # every term physical: within its bounds, host time below a millisecond's order, acceptance a share
    for terms in shipped["engines"].values():
        for k, v in terms.items():
            lo, hi = fit.BOUNDS[k]
            assert lo <= v <= hi
    # the base run is of the shipped measured rows
    base = json.loads(BASE.read_text(encoding="utf-8"))
    measured = {r.index: r.measured for r in rows_of(INFERENCEX)}
    assert {r["row"]: r["measured"] for r in base["rows"]} == measured


def test_leave_one_group_out_never_sees_the_group():
    rows = [_row(i, e, d, m) for i, (e, d, m) in enumerate(
        [(e, d, m) for e in fit.ENGINES for d in (False, True) for m in (False, True)] * 2, start=1)]
    out = leave_one_group_out(rows, fit_rows(rows))
    assert set(out) == {r.group for r in rows} | {"all rows, each group held out"}
    assert out["all rows, each group held out"]["rows"] == len(rows)


def test_base_rows_carry_no_terms():
    row = rows_of(INFERENCEX)[2]  # an MTP row
    b = base_row(row).scenario["serving"]
    assert b["overheads"] == {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.0} and b["mtp"]["acceptance"] == A0


def test_scenario_overheads_win_over_the_engine_terms():
    from moesim.config.serving import ServingSpec
    eng = fitted_terms()["engines"]["sglang"]
    sv = ServingSpec(engine="sglang", overheads={"request_s": 0.5}, mtp={"draft_tokens": 1})
    o = overheads(sv)
    assert o.request_s == 0.5 and o.host_s == pytest.approx(eng["host_s"])
    assert mtp_of(sv).acceptance == pytest.approx(eng["mtp_acceptance"])
    given = ServingSpec(engine="sglang", mtp={"draft_tokens": 1, "acceptance": 0.5})
    assert mtp_of(given).acceptance == 0.5
    assert overheads(ServingSpec()).host_s == 0.0  # no engine: nothing fitted applies


def test_an_engine_with_no_rows_takes_the_pooled_terms():
    """vLLM has no measured rows: it takes the terms fitted on every engine's rows together, which lie
    between the fitted engines' own (one shared loss over both)."""
    from moesim.config.serving import ServingSpec
    doc = fitted_terms()
    assert "vllm" not in doc["engines"]
    o = overheads(ServingSpec(engine="vllm"))
    assert o.host_s == doc["pooled"]["host_s"] and o.request_s == doc["pooled"]["request_s"]
    own = [e["request_s"] for e in doc["engines"].values()]
    assert min(own) <= o.request_s <= max(own)
    assert mtp_of(ServingSpec(engine="vllm", mtp={"draft_tokens": 1})).acceptance == doc["pooled"]["mtp_acceptance"]


def test_leave_one_engine_out_fits_without_the_engine():
    rows = [_row(i, e, d, m) for i, (e, d, m) in enumerate(
        [(e, d, m) for e in fit.ENGINES for d in (False, True) for m in (False, True)] * 2, start=1)]
    out = fit.leave_one_engine_out(rows, fit_rows(rows))
    assert set(out) == set(fit.ENGINES)
    for e in fit.ENGINES:
        assert out[e]["rows"] == sum(r.engine == e for r in rows)
        assert out[e]["terms"] == fit.fit_pooled([r for r in rows if r.engine != e and r.index in fit_rows(rows)])


def test_refit_command_prints_the_terms_and_logo(tmp_path, monkeypatch):
    import moesim.serve.terms as terms
    monkeypatch.setattr(terms, "TERMS_FILE", tmp_path / "engine_terms.json")
    r = CliRunner().invoke(main, ["validate", "e2e", "--refit"])
    assert r.exit_code == 0, r.output
    assert "leave one group out" in r.stdout and "sglang" in r.stdout and "fitted on rows" in r.stdout
    assert "leave one engine out" in r.stdout and "pooled over every engine" in r.stdout
    assert json.loads((tmp_path / "engine_terms.json").read_text())["engines"] == fitted_terms()["engines"]
