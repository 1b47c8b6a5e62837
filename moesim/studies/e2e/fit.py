"""Fitting the engine terms (moesim.serve.terms) on measured rows, and checking them on rows they never saw.

The terms are few and physical, per engine (``sglang``, ``trtllm``): the host's time per iteration
(``host_s``), the front end's per request (``request_s``), a disaggregated hand-over's per request
(``handoff_s``) and the acceptance of one MTP draft (``mtp_acceptance``). Each enters the serving DES as a
named delay, so the fit needs the DES once, not once per trial: the *base* run (every term 0, acceptance
A0) gives per row its median TTFT and TPOT and its throughput, and the terms move them as the DES would:

- a decode step takes ``host_s`` longer and emits n(a) = 1 + a + ... + a^d tokens instead of n(A0) (d
  drafts, each accepted with chance a when the earlier ones were): TPOT = (TPOT0 n(A0) + host_s) / n(a);
- the first token waits for the front end, one more host pass and, disaggregated, the hand-over:
  TTFT = TTFT0 + request_s + host_s + handoff_s;
- a closed loop keeps ``conc`` requests in flight, so throughput is conc / latency (Little's law):
  throughput = throughput0 x L0 / L, L = TTFT + (mean output - 1) x TPOT.

The fit minimises the log errors of the three metrics on the *fit* rows (every other row of each group, in
file order) with a robust loss (scipy's least_squares, soft-L1: a row whose TTFT is queueing the model does
not have weighs less), within physical bounds. It is deterministic. The *test* rows are never used; the
leave-one-group-out table refits without each group in turn and reports that group's errors.

An engine with no measured rows (vLLM here) gets the *pooled* terms: one set shared by every engine, fitted
on all the fit rows. Leave one engine out fits the pooled terms without one engine and predicts its rows:
how an engine nobody measured fares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from moesim.studies.e2e.run import A0, METRICS

ENGINES = ("sglang", "trtllm")
TERMS = ("host_s", "request_s", "handoff_s", "mtp_acceptance")
UNITS = {"host_s": "s per iteration", "request_s": "s per request", "handoff_s": "s per disaggregated request",
         "mtp_acceptance": "share of drafts accepted"}
START = {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.0, "mtp_acceptance": A0}
BOUNDS = {"host_s": (0.0, 0.05), "request_s": (0.0, 2.0), "handoff_s": (0.0, 5.0), "mtp_acceptance": (0.5, 0.95)}
F_SCALE = 0.1  # soft-L1 turns linear beyond ~10% log error


@dataclass(frozen=True)
class BaseRow:
    """One row's base prediction (no terms, acceptance A0) and what the surrogate needs of it."""

    index: int
    group: str
    engine: str
    disagg: bool
    mtp: bool
    mean_output: float
    drafts: int
    base: dict[str, float]
    measured: dict[str, float]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaseRow:
        return cls(int(d["row"]), d["group"], d["engine"], bool(d["disagg"]), bool(d["mtp"]),
                   float(d["mean_output"]), int(d.get("drafts", 1 if d["mtp"] else 0)),
                   {m: float(d["base"][m]) for m in METRICS}, {m: float(d["measured"][m]) for m in METRICS})


def fit_rows(rows: list[BaseRow]) -> frozenset[int]:
    """The fit rows: the 1st, 3rd, 5th ... row of each group in file order (the rest are test rows)."""
    out = set()
    for g in sorted({r.group for r in rows}):
        out.update(r.index for r in sorted((r for r in rows if r.group == g), key=lambda r: r.index)[::2])
    return frozenset(out)


def surrogate(row: BaseRow, t: dict[str, float]) -> dict[str, float]:
    """The row's metrics with one engine's terms ``t`` applied to its base run (see the module docstring)."""
    b = row.base
    host, a = t["host_s"], t["mtp_acceptance"]
    step = b["tpot_s"] * emitted(A0, row.drafts)
    tpot = (step + host) / emitted(a, row.drafts)
    ttft = b["ttft_s"] + t["request_s"] + host + (t["handoff_s"] if row.disagg else 0.0)
    latency0 = b["ttft_s"] + (row.mean_output - 1) * b["tpot_s"]
    latency = ttft + (row.mean_output - 1) * tpot
    return {"ttft_s": ttft, "tpot_s": tpot, "tokens_per_s_per_gpu": b["tokens_per_s_per_gpu"] * latency0 / latency}


def emitted(a: float, drafts: int) -> float:
    """Tokens one decode step emits on average: 1 plus each draft accepted with chance a given the earlier."""
    return 1.0 + sum(a ** i for i in range(1, drafts + 1))


def _unpack(x: np.ndarray) -> dict[str, dict[str, float]]:
    return {e: dict(zip(TERMS, x[i * len(TERMS):(i + 1) * len(TERMS)], strict=True)) for i, e in enumerate(ENGINES)}


def fit(rows: list[BaseRow]) -> dict[str, dict[str, float]]:
    """Per engine, the terms minimising the robust log errors on ``rows``. A term no row informs keeps its
    start value (0 s; acceptance A0)."""
    x0 = np.array([START[k] for _ in ENGINES for k in TERMS])
    lo = np.array([BOUNDS[k][0] for _ in ENGINES for k in TERMS])
    hi = np.array([BOUNDS[k][1] for _ in ENGINES for k in TERMS])
    used = [r for r in rows if r.engine in ENGINES]

    def residuals(x: np.ndarray) -> np.ndarray:
        terms = _unpack(x)
        out = []
        for r in used:
            p = surrogate(r, terms[r.engine])
            out.extend(np.log(p[m] / r.measured[m]) for m in METRICS)
        return np.asarray(out)

    res = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=F_SCALE, x_scale=np.maximum(hi, 1e-3),
                        xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=20000)
    return {e: {k: float(round(v, 6)) for k, v in t.items()} for e, t in _unpack(res.x).items()}


def fit_pooled(rows: list[BaseRow]) -> dict[str, float]:
    """One set of terms shared by every engine, minimising the same loss over ``rows``: what an engine with no
    measured rows of its own gets (moesim.serve.terms)."""
    return fit([replace(r, engine=ENGINES[0]) for r in rows])[ENGINES[0]]


def leave_one_engine_out(rows: list[BaseRow], train: frozenset[int]) -> dict[str, dict[str, Any]]:
    """Per engine: pooled terms fitted on the other engines' fit rows, and the errors on all this engine's
    rows, as an engine nobody measured would be predicted."""
    out = {}
    for e in ENGINES:
        pooled = fit_pooled([r for r in rows if r.engine != e and r.index in train])
        mine = [r for r in rows if r.engine == e]
        out[e] = {**errors(mine, {e: pooled}), "terms": pooled, "nothing fitted": errors(mine, {e: START})}
    return out


def errors(rows: list[BaseRow], terms: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Signed errors per row and MAPE / bias over them, per metric (fractions)."""
    per = [{m: surrogate(r, terms.get(r.engine, START))[m] / r.measured[m] - 1 for m in METRICS} for r in rows]
    return {"rows": len(rows), **{m: {"mape": float(np.mean([abs(e[m]) for e in per])) if per else None,
                                      "bias": float(np.mean([e[m] for e in per])) if per else None}
                                  for m in METRICS}}


def leave_one_group_out(rows: list[BaseRow], train: frozenset[int]) -> dict[str, dict[str, Any]]:
    """Per group: refit on the fit rows of every other group, and the errors on all of this group's rows;
    and every row's error under the fit that left its group out, pooled."""
    out, held = {}, []
    for g in sorted({r.group for r in rows}):
        terms = fit([r for r in rows if r.group != g and r.index in train])
        mine = [r for r in rows if r.group == g]
        out[g] = errors(mine, terms)
        held += [(r, terms) for r in mine]
    per = [{m: surrogate(r, t[r.engine])[m] / r.measured[m] - 1 for m in METRICS} for r, t in held]
    out["all rows, each group held out"] = {"rows": len(per), **{
        m: {"mape": float(np.mean([abs(e[m]) for e in per])), "bias": float(np.mean([e[m] for e in per]))}
        for m in METRICS}}
    return out


def refit(base: dict[str, Any]) -> dict[str, Any]:
    """The whole fit from a base-run document: terms (with units and the rows they were fitted on), the
    errors on fit and test rows, and leave-one-group-out. Deterministic."""
    rows = [BaseRow.from_dict(d) for d in base["rows"]]
    train = fit_rows(rows)
    terms = fit([r for r in rows if r.index in train])
    pooled = fit_pooled([r for r in rows if r.index in train])
    return {
        "label": "fitted",
        "how": "moesim validate e2e --refit (moesim.studies.e2e.fit): robust least squares of log errors of "
               "median TTFT, median TPOT and throughput per GPU over the fit rows, on the base run "
               f"{base.get('source', '')}".strip(),
        "fit_rows": sorted(train), "test_rows": sorted(r.index for r in rows if r.index not in train),
        "units": UNITS, "engines": terms, "pooled": pooled,
        "surrogate_errors": {"fit": errors([r for r in rows if r.index in train], terms),
                             "test": errors([r for r in rows if r.index not in train], terms)},
        "leave_one_group_out": leave_one_group_out(rows, train),
        "leave_one_engine_out": leave_one_engine_out(rows, train)}
