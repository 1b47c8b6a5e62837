"""``moesim report``: a self-contained HTML page (figures embedded) and a Markdown page from a run
(`moesim run -o DIR`), a comparison (`moesim compare -o DIR`), a sweep (`moesim sweep -o DIR`), a serving
run (`moesim serve -o DIR`) or a plan (`moesim plan -o DIR`).
Summary and recommendation first, then figures, then every number in a table. Reads files only."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moesim.present import charts
from moesim.present import html_tables as report_tables
from moesim.present.report_multi import multi_figures, multi_rows, multi_summary
from moesim.present.report_serve import plan_figures, plan_summary, serve_figures, serve_summary
from moesim.studies import objective
from moesim.util.errors import MoesimError
from moesim.util.files import write_atomic


def detect(path: Path) -> tuple[str, Any]:
    """('run' | 'compare' | 'plan' | 'serve' | 'sweep', data) from a results folder or file."""
    from moesim.util import safeio
    folder = path if path.is_dir() else path.parent
    for name, kind, want in (("result.json", "run", dict), ("compare.json", "compare", list),
                             ("plan.json", "plan", dict), ("serve.json", "serve", dict)):
        if (folder / name).is_file():
            data = safeio.load_json(folder / name, what=name)
            if not isinstance(data, want):
                raise MoesimError(f"{folder / name}: not a moesim {kind} result (a {type(data).__name__}); "
                                  f"make it again with moesim {kind} -o")
            return kind, data
    if (folder / "results.jsonl").is_file():
        text = safeio.read_text(folder / "results.jsonl", what="results.jsonl")
        rows = [safeio.parse_json(x, str(folder / "results.jsonl")) for x in text.splitlines() if x.strip()]
        if not all(isinstance(r, dict) for r in rows):
            raise MoesimError(f"{folder / 'results.jsonl'}: not a moesim sweep result; run the sweep again")
        return "sweep", rows
    raise MoesimError(f"{path}: no result.json, compare.json, plan.json, serve.json or results.jsonl there; give "
                      "the folder written by moesim run -o, compare -o, sweep -o, serve -o or plan -o")


def run_figures(doc: dict[str, Any], folder: Path) -> list[dict]:
    """Chart specs for a run: per-layer time split, GPU × layer load heatmap, inter-node bytes."""
    import numpy as np
    layers = doc["layers"]
    cats = [str(r["layer"]) for r in layers]
    series = []
    for key in [*doc.get("stage_names", []), "waiting"]:
        v = [r.get(f"{key}_s", 0.0) * 1e3 for r in layers]
        if any(v):
            series.append({"name": key, "y": v})
    figs = [charts.bar("Per-layer time split", "Every named stage's exposed time and the waiting on each "
                       "layer's critical GPU; they add up to the layer's share of the iteration.", cats,
                       "time on the critical GPU (ms)", series, stacked=True, xlabel="MoE layer pass",
                       yunit="ms")]
    heat = folder / "gpu_layer_tokens.csv"
    if heat.is_file():
        m = np.loadtxt(heat, delimiter=",", ndmin=2)
        figs.append(charts.heatmap("GPU × layer load", "Expert tokens per GPU, relative to the layer's mean: "
                                   "bright cells are hot GPUs.", (m / m.mean(axis=1, keepdims=True)).tolist(),
                                   "GPU", "MoE layer", "tokens / layer mean",
                                   yticks=cats if len(cats) == m.shape[0] else None))
    if any(r["inter_node_bytes"] for r in layers):  # one node: nothing crosses the network, no empty chart
        figs.append(charts.bar("Inter-node bytes", "Dispatch plus combine bytes that cross the network, per "
                               "layer.", cats, "inter-node GB",
                               [{"name": "inter-node", "y": [r["inter_node_bytes"] / 1e9 for r in layers]}],
                               xlabel="MoE layer", yunit="GB"))
    return figs


def compare_figures(rows: list[dict[str, Any]]) -> list[dict]:
    ok = [r for r in rows if not r.get("error")]
    cats = [f"{r['placement']} +{r['redundant_experts']}" for r in ok]
    out = []
    for key, scale, ylabel, title in (
            ("throughput_tokens_per_s", 1e-3, "k tokens/s", "Throughput (higher is better)"),
            ("gpu_load_max_over_mean", 1.0, "max / mean", "GPU load imbalance (lower is better)"),
            ("inter_node_bytes", 1e-9, "GB", "Inter-node bytes")):
        out.append(charts.bar(title, "Same scenario, same router draws; only the placement differs.", cats,
                              ylabel, [{"name": key, "y": [r[key] * scale for r in ok]}],
                              xlabel="placement +redundant", yunit=ylabel))
    return out


def sweep_figures(rows: list[dict[str, Any]], rank_by: str = "throughput-per-gpu",
                  prices: objective.Prices = None) -> list[dict]:
    """Throughput, and the objective the page ranks by when it is another figure, against the first numeric
    swept axis (cluster.nodes where swept), one line per combination of the others."""
    ok = [r for r in rows if "error" not in r and r.get("throughput_tokens_per_s")]
    params = [k for k in (rows[0] if rows else {}) if "." in k]
    if not ok or not params:
        return []
    o = objective.OBJECTIVES.get(rank_by)
    figs = [_sweep_figure(ok, params, "Throughput", "k tokens/s", lambda r: r["throughput_tokens_per_s"] / 1e3)]
    if o.name != "throughput":
        scale = 1e3 if o.name == "latency" else 1.0
        unit = "ms" if o.name == "latency" else o.unit
        figs.append(_sweep_figure(ok, params, o.title, unit,
                                  lambda r: (o.value(r, prices) or math.nan) * scale))
    return figs


def _sweep_figure(ok: list[dict[str, Any]], params: list[str], what: str, unit: str, y: Any) -> dict:
    numeric = [p for p in params if all(isinstance(r.get(p), int | float) for r in ok)]
    xkey = "cluster.nodes" if "cluster.nodes" in params else (numeric or params)[0]
    others = [p for p in params if p != xkey]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault(", ".join(f"{p.split('.')[-1]}={r[p]}" for p in others) or "all", []).append(r)
    if xkey not in numeric:  # a categorical axis: bars
        cats = sorted({str(r[xkey]) for r in ok})
        series = [{"name": n, "y": [next((y(r) for r in rs if str(r[xkey]) == c), None) for c in cats]}
                  for n, rs in groups.items()]
        return charts.bar(f"{what} against {xkey}", "One bar per combination of the other swept parameters.",
                          cats, unit, series, xlabel=xkey, yunit=unit)
    series = [{"name": n, "x": [r[xkey] for r in sorted(rs, key=lambda r: r[xkey])],
               "y": [y(r) for r in sorted(rs, key=lambda r: r[xkey])]} for n, rs in groups.items()]
    return charts.line(f"{what} against {xkey}", "One line per combination of the other swept parameters.",
                       xkey, unit, series, yunit=unit)


@dataclass(frozen=True)
class Rank:
    """The objective the page recommends by (``moesim.studies.objective``) and the prices it may need."""

    name: str = "throughput-per-gpu"
    prices: objective.Prices = None


def _summary(kind: str, data: Any, rank: Rank) -> list[str]:
    """Summary and recommendation lines (plain text)."""
    if kind == "run":
        t = data["totals"]
        worst = max(data["layers"], key=lambda r: r["waiting_s"])
        return [f"{data['scenario']}: {data['model']} on {data['nodes']}×{data['gpus_per_node']} {data['gpu']}, "
                f"{data['mode']}, {data['tokens_per_gpu']} tokens/GPU.",
                f"{'Model' if data.get('throughput_scope') == 'whole_model' else 'MoE-layer'} throughput "
                f"{data['throughput_tokens_per_s']:,.0f} tokens/s; iteration "
                f"{data['iteration_time_s'] * 1e3:.3f} ms.",
                f"GPU load max/mean {t['mean_layer_gpu_load_max_over_mean']:.2f} (per layer, averaged); waiting "
                f"is {100 * t['waiting_s'] / max(data['iteration_time_s'], 1e-30):.0f}% of the iteration; "
                + (f"{t['inter_node_bytes'] / 1e9:,.3g} GB cross the network." if t["inter_node_bytes"] else
                   "nothing crosses the network (one node), so there is no inter-node chart."),
                "Recommendation: " + ("balance the experts (moesim compare --placements eplb) - waiting dominates."
                                      if t["waiting_s"] > 0.3 * data["iteration_time_s"] else
                                      "compute and communication dominate; imbalance is not the bottleneck.")
                + f" Most waiting: layer {worst['layer']}."]
    if kind == "plan":
        return plan_summary(data)
    if kind == "serve":
        return serve_summary(data)
    ok = [r for r in data if not r.get("error")]
    if not ok:
        return ["Every point failed; see the table."]
    at = objective.best(data, rank.name, rank.prices)
    if at is None:
        return [f"{len(data)} rows, {len(data) - len(ok)} failed; none can be ranked by {rank.name}."]
    best = data[at]
    if kind == "compare":
        worst = min(ok, key=lambda r: r["throughput_tokens_per_s"])
        what = (f"{best['placement']} with {best['redundant_experts']} redundant experts, "
                f"{best['throughput_tokens_per_s'] / worst['throughput_tokens_per_s']:.2f}x the throughput of the "
                f"slowest ({worst['placement']} +{worst['redundant_experts']})")
        return [f"{len(data)} variants, {len(data) - len(ok)} failed.",
                objective.recommend_line(best, rank.name, rank.prices, what)]
    params = {k: v for k, v in best.items() if "." in k}
    top = data[objective.best(data, "throughput", None) or 0]
    lines = [f"{len(data)} points, {len(data) - len(ok)} failed.",
             objective.recommend_line(best, rank.name, rank.prices, json.dumps(params)
                                      + f" ({best['throughput_tokens_per_s']:,.0f} tokens/s in all)")]
    if top is not best:
        lines.append(f"The highest total throughput is {json.dumps({k: v for k, v in top.items() if '.' in k})}: "
                     f"{top['throughput_tokens_per_s']:,.0f} tokens/s, "
                     f"{objective.per_gpu(top) or 0:,.0f} tokens/s/GPU.")
    return lines


def _rows(kind: str, data: Any, rank: Rank) -> tuple[list[dict[str, Any]], int | None]:
    """The table's rows and the index of the recommended one."""
    if kind == "serve":
        rows = [{"surface": k, **{kk: vv for kk, vv in v.items() if not isinstance(vv, list | dict)},
                 "holdout_max_error": (v.get("holdout_error") or {}).get("max")} for k, v in data["surfaces"].items()]
        return rows + [{"surface": f"instances: {i['role']}", **i} for i in data["instances"]], None
    if kind == "multi":
        return multi_rows(data, rank.name, rank.prices)
    if kind == "run":
        return data["layers"], None
    if kind == "plan":
        b = data.get("best") or {}
        best = next((i for i, r in enumerate(data["rows"]) if b and r.get("label") == b.get("label")
                     and r.get("max_batch") == b.get("max_batch")), None)
        return data["rows"], best
    return data, objective.best(data, rank.name, rank.prices)


PAGE_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;color:#222;padding:0 1em}"
              ".chart{position:relative;margin:0 0 1.5em}.chart svg{display:block;user-select:none}"
              ".tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.grid{stroke:#e6e6e6}"
              ".hline{stroke:#777;stroke-dasharray:5 3}.overlay{fill:transparent;cursor:crosshair}"
              ".brush{fill:rgba(0,103,165,.15)}.tip{position:absolute;display:none;pointer-events:none;"
              "background:#fff;border:1px solid #bbb;padding:4px 6px;font-size:12px;box-shadow:0 1px 4px #0002;"
              "z-index:2;white-space:nowrap}.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;"
              "margin:4px 0 0 70px}.legend i{display:inline-block;width:11px;height:11px;margin-right:5px;"
              "vertical-align:-1px}"
              ".scroll{overflow-x:auto;width:calc(100vw - 3em);margin-left:calc(50% - 50vw + 1.5em)}"
              "table.rows{border-collapse:collapse;font-size:12px}"
              "td,th{border:1px solid #ddd;padding:3px 5px;text-align:right;white-space:nowrap}"
              "td.text{text-align:left}td.note{text-align:left;white-space:normal;min-width:24em;max-width:60em}"
              "th{background:#f4f4f4;cursor:pointer;position:sticky;top:0;white-space:normal;min-width:4em;max-width:9em;"
              "vertical-align:bottom}tbody td:first-child,thead th:first-child{position:sticky;left:0;z-index:1;"
              "background:#fff}thead th:first-child{background:#f4f4f4;z-index:2}th[data-dir=asc]:after{content:' ▲'}"
              "th[data-dir=desc]:after{content:' ▼'}tr.best td{background:#e3f4e3;font-weight:600}"
              ".hint{color:#666;font-size:12px}")


def detect_all(paths: list[Path]) -> tuple[str, Any]:
    """One results folder as ``detect`` reads it; several: ('multi', [(name, kind, data), ...])."""
    if len(paths) == 1:
        return detect(paths[0])
    items = []
    for p in paths:
        kind, data = detect(p)
        items.append((p.name if p.is_dir() else p.parent.name, kind, data))
    return "multi", items


def write_report(results: Path | list[Path], out: Path, title: str | None = None,
                 rank_by: str = "throughput-per-gpu", prices: objective.Prices = None) -> list[Path]:
    """index.html (self-contained, interactive) and README.md (+ PNGs) in ``out``; several results folders
    give one page comparing them. Rows are recommended by ``rank_by`` (an objective's name)."""
    paths = results if isinstance(results, list) else [results]
    kind, data = detect_all(paths)
    try:
        return _write(paths, kind, data, out, title, Rank(rank_by, prices))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise MoesimError(f"{paths[0]}: not a complete moesim {kind} result (missing or wrong {exc}); make it "
                          f"again with moesim {kind} -o") from None


def _write(paths: list[Path], kind: str, data: Any, out: Path, title: str | None, rank: Rank) -> list[Path]:
    folder = paths[0] if paths[0].is_dir() else paths[0].parent
    figs = {"run": lambda: run_figures(data, folder), "compare": lambda: compare_figures(data),
            "sweep": lambda: sweep_figures(data, rank.name, rank.prices), "plan": lambda: plan_figures(data),
            "serve": lambda: serve_figures(folder), "multi": lambda: multi_figures(data)}[kind]()
    title = title or f"moesim {kind} report"
    summary = multi_summary(data, rank.name, rank.prices) if kind == "multi" else _summary(kind, data, rank)
    rows, best = _rows(kind, data, rank)
    prefer = (["block", "time_s", "waiting_s", "critical_gpu", "gpu_load_max_over_mean"]
              + [f"{n}_s" for n in data.get("stage_names", [])]) if kind == "run" else None
    _, table_html, table_md = report_tables.table(rows, best, prefer)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", "", *[f"- {s}" for s in summary], ""]
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>", *[f"<li>{html.escape(s)}</li>" for s in summary], "</ul>",
            "<p class='hint'>Charts: hover for values, drag across a chart to zoom, double-click to reset. "
            "Tables: click a header to sort; the recommended row is highlighted.</p>"]
    for i, spec in enumerate(figs, 1):
        fname = f"figure{i}.png"
        (out / fname).write_bytes(charts.png(spec))
        md += [f"## {spec['title']}", "", spec["caption"], "", f"![{spec['title']}]({fname})", ""]
        body += [f"<h2>{html.escape(spec['title'])}</h2>", f"<p>{html.escape(spec['caption'])}</p>",
                 charts.html_div(spec)]
    md += ["## Every row", "", *table_md]
    body += ["<h2>Every row</h2>", table_html]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            + PAGE_STYLE + "</style></head><body>" + "\n".join(body) + "<script>" + charts.script()
            + "</script></body></html>\n")
    write_atomic(out / "index.html", page)
    write_atomic(out / "README.md", "\n".join(md) + "\n")
    return [out / "index.html", out / "README.md"]
