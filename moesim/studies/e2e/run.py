"""Run measured end-to-end rows through the serving simulator and compare: per row the signed errors of
median TTFT, median TPOT and throughput per GPU; per group and overall their MAPE and bias.

Rows the engine terms were fitted on (moesim.serve.terms, their file's ``fit_rows``) are marked ``fit``,
the others ``test``; errors are reported for both, apart. The *base* run (``base_document``) serves every
row with no terms at all, which is what the fit (moesim.studies.e2e.fit) starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from moesim.iteration.scenario import scenario_from_dict
from moesim.serve.run import serve
from moesim.serve.terms import fitted_terms
from moesim.studies.e2e import inferencex

METRICS = ("ttft_s", "tpot_s", "tokens_per_s_per_gpu")
DATA = Path(__file__).parent / "data"
INFERENCEX = DATA / "inferencex-dsr1-h200.csv"


@dataclass(frozen=True)
class Row:
    """One measured row: its index (1-based, file order), group, split, scenario and measurements."""

    index: int
    group: str
    split: str  # fit | test
    scenario: dict[str, Any]
    measured: dict[str, float]


BASE = DATA / "inferencex-dsr1-h200-base.json"  # the base run of the shipped rows (moesim validate e2e --rebase)
A0 = 0.85  # the base run's MTP acceptance (moesim.studies.e2e.fit)


def fitted_rows() -> frozenset[int]:
    """The rows the shipped engine terms were fitted on."""
    return frozenset(int(i) for i in fitted_terms().get("fit_rows", []))


def rows_of(path: Path, fitted: frozenset[int] | None = None) -> list[Row]:
    """The InferenceX export at ``path`` as rows; ``fitted``: indices of rows a fitted term used (default:
    the shipped terms' fit rows)."""
    fitted = fitted_rows() if fitted is None else fitted
    return [Row(i, inferencex.group(r), "fit" if i in fitted else "test", inferencex.scenario(r, i),
                inferencex.measured(r)) for i, r in enumerate(inferencex.read_rows(path), start=1)]


def base_row(row: Row) -> Row:
    """The row with no engine terms: every overhead 0, MTP acceptance A0."""
    sv = {**row.scenario["serving"], "overheads": {"host_s": 0.0, "request_s": 0.0, "handoff_s": 0.0}}
    if "mtp" in sv:
        sv["mtp"] = {**sv["mtp"], "acceptance": A0}
    return replace(row, scenario={**row.scenario, "serving": sv})


def base_document(rows: list[Row], executor: Any, use_cache: bool = True,
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Every row served with no engine terms: what the fit needs of each (its base metrics, engine,
    shape, MTP, mean answer length: 0.9 x osl, the benchmark's uniform 0.8-1.0 x osl)."""
    doc = compare([base_row(r) for r in rows], executor, use_cache, progress)
    out = []
    for row, r in zip(rows, doc["rows"], strict=True):
        if "error" in r:
            raise ValueError(f"row {row.index} does not run: {r['error']}")
        sv = row.scenario["serving"]
        out.append({"row": row.index, "group": row.group, "engine": sv.get("engine"),
                    "disagg": sv["deployment"]["kind"] == "disaggregated", "mtp": "mtp" in sv,
                    "drafts": sv["mtp"]["draft_tokens"] if "mtp" in sv else 0,
                    "mean_output": 0.9 * sv["output_tokens"]["value"], "base": r["predicted"],
                    "measured": row.measured})
    return {"source": "moesim validate e2e --rebase", "a0": A0, "rows": out}


def predict(row: Row, executor: Any, use_cache: bool = True) -> dict[str, float]:
    """The simulated medians and throughput of one row (the metrics ``inferencex.measured`` names)."""
    s = scenario_from_dict(row.scenario)
    doc = serve(s, executor, use_cache).summary
    return {"ttft_s": doc["ttft_s"]["p50"], "tpot_s": doc["tpot_s"]["p50"],
            "tokens_per_s_per_gpu": doc["throughput"]["total_tokens_per_s"] / s.cluster.num_gpus}


def compare(rows: list[Row], executor: Any, use_cache: bool = True,
            progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Every row predicted and compared: {rows: [...], groups: {name: stats}, overall: {split: stats}}."""
    out = []
    for k, row in enumerate(rows):
        if progress:
            progress(k, len(rows), row.group)
        try:
            pred = predict(row, executor, use_cache)
        except Exception as exc:  # a row moesim cannot run is reported, not skipped silently
            out.append({"row": row.index, "group": row.group, "split": row.split, "error": str(exc)})
            continue
        err = {m: pred[m] / row.measured[m] - 1.0 for m in METRICS}
        sv = row.scenario["serving"]
        out.append({"row": row.index, "group": row.group, "split": row.split, "name": row.scenario["name"],
                    "concurrency": sv["load"]["concurrency"], "isl": sv["input_tokens"]["value"],
                    "osl": sv["output_tokens"]["value"], "measured": row.measured, "predicted": pred,
                    "signed_error": err})
    if progress:
        progress(len(rows), len(rows), "")
    ok = [r for r in out if "error" not in r]
    groups = {g: stats([r for r in ok if r["group"] == g]) for g in sorted({r["group"] for r in ok})}
    overall = {sp: stats([r for r in ok if r["split"] == sp]) for sp in ("fit", "test")
               if any(r["split"] == sp for r in ok)}
    return {"rows": out, "groups": groups, "overall": overall, "failed": len(out) - len(ok)}


def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric over ``rows``: MAPE and mean signed error (bias), both as fractions, and the count."""
    doc: dict[str, Any] = {"rows": len(rows)}
    for m in METRICS:
        e = np.array([r["signed_error"][m] for r in rows])
        doc[m] = {"mape": float(np.abs(e).mean()) if e.size else None, "bias": float(e.mean()) if e.size else None}
    return doc


def select(rows: list[Row], only: str | None) -> list[Row]:
    """Rows whose group contains ``only``, or whose numbers it lists (``1,5,9``); all without it."""
    if not only:
        return rows
    if all(p.strip().isdigit() for p in only.split(",")):
        wanted = {int(p) for p in only.split(",")}
        return [r for r in rows if r.index in wanted]
    return [r for r in rows if only in r.group]

