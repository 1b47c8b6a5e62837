"""What the measured-rows validations with one metric a row share (``validate training``, ``validate
offload``): errors per group, per split (fit / test) and overall, and the summary lines of their tables.
A row is {row, group, split, measured, predicted, signed_error, ...}."""

from __future__ import annotations

from typing import Any

import numpy as np


def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MAPE and bias (fractions) of the metric over ``rows``, and their count."""
    e = np.array([x["signed_error"] for x in rows])
    return {"rows": len(rows), "mape": float(np.abs(e).mean()) if e.size else None,
            "bias": float(e.mean()) if e.size else None}


def summary(out: list[dict[str, Any]], skipped: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """The comparison document: the rows, those skipped, and errors per group, per split and overall."""
    groups = {name: stats([x for x in out if x["group"] == name]) for name in sorted({x["group"] for x in out})}
    splits = {sp: stats([x for x in out if x["split"] == sp]) for sp in ("fit", "test")}
    return {"rows": out, "skipped": list(skipped), "groups": groups, "overall": stats(out), "splits": splits,
            "source": source}


def summary_lines(doc: dict[str, Any], width: int) -> list[str]:
    """The table's tail: MAPE and bias per group, over the fit rows, the test rows and all, then the rows
    not run and why."""
    lines = ["", f"  {'group':{width}s} {'rows':>4} {'MAPE':>7} {'bias':>7}"]
    sp = doc.get("splits", {})
    for name, s in [*doc["groups"].items(), ("all fit rows", sp.get("fit", {"rows": 0})),
                    ("all test rows", sp.get("test", {"rows": 0})), ("all rows", doc["overall"])]:
        if s["rows"]:
            lines.append(f"  {name:{width}s} {s['rows']:>4} {s['mape'] * 100:>6.1f}% {s['bias'] * 100:>+6.1f}%")
    return lines + [f"  row {x['row']} ({x['group']}) not run: {x['why']}" for x in doc["skipped"]]
