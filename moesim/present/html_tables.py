"""The "every row" tables of report pages: columns in a reading order (what identifies a row, then the
headline figures, then the rest as the results list them), values with units (ms, GB, tokens/s, $),
sortable in the page (each cell keeps its raw value), the recommended row marked."""

from __future__ import annotations

import html
import math
from typing import Any

# what identifies a row, in this order, when present
IDENTITY = ("source", "surface", "label", "gpu", "deployment", "placement", "redundant_experts", "replica_policy",
            "layer", "nodes", "gpus", "gpus_per_node", "max_batch", "feasible", "meets_target")
LAST = ("reason", "error")  # long free text: at the end, where it does not push the figures away
# the figures a reader looks for first
HEADLINE = ("throughput_tokens_per_s", "output_tokens_per_s", "iteration_time_s", "cost_per_million_tokens",
            "cost_per_hour", "gpu_load_max_over_mean", "ttft_slo_s", "tpot_slo_s", "inter_node_bytes")


def order(cols: list[str], prefer: list[str] | None = None) -> list[str]:
    """Identity columns, swept parameters (dotted names), headline figures, ``prefer`` (e.g. a run's stages
    in program order), then the others as listed."""
    first = [c for c in IDENTITY if c in cols]
    params = [c for c in cols if "." in c and c not in first]
    head = [c for c in HEADLINE if c in cols and c not in first]
    head += [c for c in (prefer or []) if c in cols and c not in first + head]
    last = [c for c in LAST if c in cols]
    rest = [c for c in cols if c not in first + params + head + last]
    return first + params + head + rest + last


def unit(col: str) -> tuple[str, float]:
    """(unit shown in the header, scale from the stored SI value) for a column name."""
    rules = (("_tokens_per_s_per_gpu", "tokens/s/GPU", 1.0), ("_tokens_per_s", "tokens/s", 1.0),
             ("_requests_per_s", "req/s", 1.0), ("_per_million_tokens", "$/Mtok", 1.0), ("_per_hour", "$/h", 1.0),
             ("_gib", "GiB", 1.0), ("_bytes", "GB", 1e-9), ("_flops", "TFLOP", 1e-12), ("_s", "ms", 1e3))
    for suffix, name, scale in rules:
        if col.endswith(suffix) or (suffix == "_bytes" and col.endswith("bytes")):
            return name, scale
    return "", 1.0


def header(col: str) -> str:
    """The column's name without the unit suffix, and the unit: ``iteration_time (ms)``."""
    name, _ = unit(col)
    if not name:
        return col
    for suffix in ("_per_s_per_gpu", "_per_million_tokens", "_per_hour", "_per_s", "_bytes", "_gib", "_flops", "_s"):
        if col.endswith(suffix) and len(col) > len(suffix):
            return f"{col[: -len(suffix)]} ({name})"
    return f"{col} ({name})"


def cell(col: str, v: Any, row: dict[str, Any]) -> tuple[str, str]:
    """(text shown, raw value for sorting)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–", ""
    if isinstance(v, bool):
        return ("yes" if v else "no"), str(int(v))
    if col in ("gpus", "cost_per_hour") and not row.get("feasible", True) and not v:
        return "–", ""  # an infeasible deployment has no GPU count or price to show
    if isinstance(v, int):
        return f"{v:,}", str(v)
    if isinstance(v, float):
        _, scale = unit(col)
        x = v * scale
        text = f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
        return text, repr(v)
    return str(v), str(v)


def _key(v: Any) -> str:
    """Equal values give equal keys (0 and 0.0 alike)."""
    return repr(float(v)) if isinstance(v, int | float) and not isinstance(v, bool) else repr(v)


def _wrap(name: str) -> str:
    """A header that may break after ``_`` and ``.`` (long metric names made wide tables wider than the page)."""
    return html.escape(name).replace("_", "_<wbr>").replace(".", ".<wbr>")


def _td(text: str, raw: str, col: str) -> str:
    try:
        float(raw)
        kind = ""
    except ValueError:
        kind = " class='note'" if col in LAST else " class='text'"
    return f"<td{kind} data-v='{html.escape(raw, quote=True)}'>{html.escape(text)}</td>"


def table(rows: list[dict[str, Any]], best: int | None = None,
          prefer: list[str] | None = None) -> tuple[list[str], str, list[str]]:
    """(ordered columns, HTML table, Markdown lines). ``best``: the index of the recommended row."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols and not isinstance(r[k], list | dict)]
    cols = order(cols, prefer)
    same = [c for c in cols if len(rows) > 1 and c not in IDENTITY[:1] and len({_key(r.get(c)) for r in rows}) == 1]
    cols = [c for c in cols if c not in same]  # a column equal in every row is said once, above the table
    shared = ", ".join(f"{header(c)} = {cell(c, rows[0].get(c), rows[0])[0]}" for c in same)
    head = "".join(f"<th title='{html.escape(c, quote=True)}: click to sort'>{_wrap(header(c))}</th>" for c in cols)
    body = []
    md = ["| " + " | ".join(header(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for i, r in enumerate(rows):
        cells = [cell(c, r.get(c), r) for c in cols]
        mark = " class='best' title='recommended'" if i == best else ""
        body.append(f"<tr{mark}>" + "".join(_td(text, raw, c) for c, (text, raw) in zip(cols, cells)) + "</tr>")
        md.append("| " + " | ".join(("**" + t + "**" if i == best else t) for t, _ in cells) + " |")
    note = f"<p class='hint'>The same in every row: {html.escape(shared)}.</p>" if same else ""
    if same:
        md = [f"The same in every row: {shared}.", "", *md]
    page = (note + f"<div class='scroll'><table class='rows'><thead><tr>{head}</tr></thead><tbody>" + "".join(body)
            + "</tbody></table></div>")
    return cols, page, md
