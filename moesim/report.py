"""``moesim report``: a self-contained HTML page (figures embedded) and a Markdown page from a run
(`moesim run -o DIR`), a comparison (`moesim compare -o DIR`), a sweep (`moesim sweep -o DIR`), a serving
run (`moesim serve -o DIR`) or a plan (`moesim plan -o DIR`).
Summary and recommendation first, then figures, then every number in a table. Reads files only."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from moesim.errors import MoesimError
from moesim.output import write_atomic
from moesim.report_serve import plan_figures, plan_summary, serve_figures, serve_summary

STYLE = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.25, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 9}
COLORS = {"route": "#8C8C8C", "dispatch": "#4C72B0", "expert": "#55A868", "combine": "#C44E52", "waiting": "#DD8452"}


def detect(path: Path) -> tuple[str, Any]:
    """('run' | 'compare' | 'sweep', data) from a results folder or file."""
    folder = path if path.is_dir() else path.parent
    if (folder / "result.json").is_file():
        return "run", json.loads((folder / "result.json").read_text())
    if (folder / "compare.json").is_file():
        return "compare", json.loads((folder / "compare.json").read_text())
    if (folder / "plan.json").is_file():
        return "plan", json.loads((folder / "plan.json").read_text())
    if (folder / "serve.json").is_file():
        return "serve", json.loads((folder / "serve.json").read_text())
    if (folder / "results.jsonl").is_file():
        return "sweep", [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines() if x.strip()]
    raise MoesimError(f"{path}: no result.json, compare.json, plan.json, serve.json or results.jsonl there; give "
                      "the folder written by moesim run -o, compare -o, sweep -o, serve -o or plan -o")


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update(STYLE)
    return plt


def run_figures(doc: dict[str, Any], folder: Path) -> list[tuple[str, str, bytes]]:
    """(title, caption, png) for a run: per-layer split, GPU × layer load heatmap, inter-node bytes."""
    import numpy as np  # noqa: PLC0415

    plt = _plt()
    layers = doc["layers"]
    x = np.arange(len(layers))
    figs = []
    fig, ax = plt.subplots(figsize=(8, 3.4))
    bottom = np.zeros(len(layers))
    names = [*doc.get("stage_names", []), "waiting"]
    cmap = plt.get_cmap("tab20")
    for i, key in enumerate(names):
        v = np.array([r.get(f"{key}_s", 0.0) for r in layers]) * 1e3
        if not v.any():
            continue
        color = "#3A3A3A" if key == "waiting" else cmap(i % 20)  # waiting: dark grey, apart from the stages
        ax.bar(x, v, bottom=bottom, color=color, label=key, width=0.85)
        bottom += v
    ax.set(xlabel="program (MoE layer pass)", ylabel="time on the critical GPU (ms)",
           title="Where each layer's time goes: waiting marks imbalance or contention")
    ax.legend(ncol=4, fontsize=7, loc="upper right")
    figs.append(("Per-layer time split", "Every named stage's exposed time and the waiting on each layer's "
                 "critical GPU; they add up to the layer's share of the iteration.", _fig_png(fig)))
    heat = folder / "gpu_layer_tokens.csv"
    if heat.is_file():
        m = np.loadtxt(heat, delimiter=",", ndmin=2)
        fig, ax = plt.subplots(figsize=(8, 3.4))
        im = ax.imshow(m / m.mean(axis=1, keepdims=True), aspect="auto", cmap="magma", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="tokens / layer mean")
        ax.set(xlabel="GPU", ylabel="MoE layer", title="GPU × layer load: bright cells are hot GPUs")
        ax.grid(False)
        figs.append(("GPU × layer load", "Expert tokens per GPU, relative to the layer's mean.", _fig_png(fig)))
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(x, [r["inter_node_bytes"] / 1e9 for r in layers], color="#4C72B0", width=0.85)
    ax.set(xlabel="MoE layer", ylabel="inter-node GB", title="Bytes between nodes per layer (dispatch + combine)")
    figs.append(("Inter-node bytes", "Dispatch plus combine bytes that cross the network.", _fig_png(fig)))
    return figs


def compare_figures(rows: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    plt = _plt()
    ok = [r for r in rows if not r.get("error")]
    labels = [f"{r['placement']}\n+{r['redundant_experts']}" for r in ok]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    for ax, key, scale, ylabel, title in (
            (axes[0], "throughput_tokens_per_s", 1e-3, "k tokens/s", "Throughput (higher is better)"),
            (axes[1], "gpu_load_max_over_mean", 1.0, "max / mean", "GPU load imbalance"),
            (axes[2], "inter_node_bytes", 1e-9, "GB", "Inter-node bytes")):
        ax.bar(range(len(ok)), [r[key] * scale for r in ok], color="#4C72B0")
        ax.set_xticks(range(len(ok)), labels, fontsize=7)
        ax.set(ylabel=ylabel, title=title)
    return [("Placements side by side", "Same scenario, same router draws; only the placement differs.",
             _fig_png(fig))]


def sweep_figures(rows: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    """Throughput against GPUs, one line per other-parameter combination (when nodes were swept)."""
    plt = _plt()
    ok = [r for r in rows if "error" not in r and r.get("throughput_tokens_per_s")]
    params = [k for k in (rows[0] if rows else {}) if "." in k]
    if not ok or not params:
        return []
    xkey = "cluster.nodes" if "cluster.nodes" in params else params[0]
    others = [p for p in params if p != xkey]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault(", ".join(f"{p.split('.')[-1]}={r[p]}" for p in others) or "all", []).append(r)
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[xkey])
        ax.plot([r[xkey] for r in rs], [r["throughput_tokens_per_s"] / 1e3 for r in rs], "o-", label=name)
    ax.set(xlabel=xkey, ylabel="MoE-layer throughput (k tokens/s)", title=f"Throughput against {xkey}")
    ax.legend(fontsize=7)
    return [(f"Throughput against {xkey}", "One line per combination of the other swept parameters.",
             _fig_png(fig))]


def _summary(kind: str, data: Any) -> list[str]:
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
                f"is {100 * t['waiting_s'] / max(data['iteration_time_s'], 1e-30):.0f}% of the iteration.",
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
    best = max(ok, key=lambda r: r["throughput_tokens_per_s"])
    if kind == "compare":
        worst = min(ok, key=lambda r: r["throughput_tokens_per_s"])
        return [f"{len(data)} variants, {len(data) - len(ok)} failed.",
                f"Recommendation: {best['placement']} with {best['redundant_experts']} redundant experts: "
                f"{best['throughput_tokens_per_s']:,.0f} tokens/s, "
                f"{best['throughput_tokens_per_s'] / worst['throughput_tokens_per_s']:.2f}× "
                f"the slowest ({worst['placement']} +{worst['redundant_experts']})."]
    params = {k: v for k, v in best.items() if "." in k}
    return [f"{len(data)} points, {len(data) - len(ok)} failed.",
            f"Recommendation: {json.dumps(params)} gives the highest throughput, "
            f"{best['throughput_tokens_per_s']:,.0f} tokens/s."]


def _table(kind: str, data: Any) -> tuple[list[str], list[list[str]]]:
    if kind == "serve":
        rows = [{"surface": k, **{kk: vv for kk, vv in v.items() if not isinstance(vv, list | dict)},
                 "holdout_max_error": (v.get("holdout_error") or {}).get("max")} for k, v in data["surfaces"].items()]
        rows += [{"surface": f"instances: {i['role']}", **i} for i in data["instances"]]
    else:
        rows = data["layers"] if kind == "run" else data["rows"] if kind == "plan" else data
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols and not isinstance(r[k], list | dict)]
    fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    return cols, [[fmt(r.get(c)) for c in cols] for r in rows]


# the page reports how many figures decoded, so a headless browser can check it (reports/check_html.sh)
_SELF_CHECK = ("<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.setAttribute("
               "'data-figures',i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length)})</script>")


def write_report(results: Path, out: Path, title: str | None = None) -> list[Path]:
    """index.html (self-contained) and README.md (+ PNGs) in ``out``."""
    kind, data = detect(results)
    figs = {"run": lambda: run_figures(data, results if results.is_dir() else results.parent),
            "compare": lambda: compare_figures(data), "sweep": lambda: sweep_figures(data),
            "plan": lambda: plan_figures(data, _fig_png, _plt()),
            "serve": lambda: serve_figures(results, _fig_png, _plt())}[kind]()
    title = title or f"moesim {kind} report"
    summary, (cols, rows) = _summary(kind, data), _table(kind, data)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", "", *[f"- {s}" for s in summary], ""]
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>", *[f"<li>{html.escape(s)}</li>" for s in summary], "</ul>"]
    for i, (name, caption, png) in enumerate(figs, 1):
        fname = f"figure{i}.png"
        (out / fname).write_bytes(png)
        md += [f"## {name}", "", caption, "", f"![{name}]({fname})", ""]
        b64 = base64.b64encode(png).decode()
        body += [f"<h2>{html.escape(name)}</h2>", f"<p>{html.escape(caption)}</p>",
                 f'<img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">']
    md += ["## Every row", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    body += ["<h2>Every row</h2>", "<div style='overflow-x:auto'><table><tr>"
             + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    body += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows]
    body += ["</table></div>"]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%}"
            "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
            "</style></head><body>" + "\n".join(body) + _SELF_CHECK + "</body></html>\n")
    write_atomic(out / "index.html", page)
    write_atomic(out / "README.md", "\n".join(md) + "\n")
    return [out / "index.html", out / "README.md"]
