"""One report page for several results folders (``moesim report A B C -o OUT``): runs side by side, plans
overlaid, anything else as one table with a ``source`` column."""

from __future__ import annotations

from typing import Any

from moesim.present import charts
from moesim.studies import objective

# (label, key in a run's result.json, scale, unit) for the side-by-side run charts
_RUN_FIGURES = (("Throughput", "throughput_tokens_per_s", 1e-3, "k tokens/s"),
                ("Iteration time", "iteration_time_s", 1e3, "ms"))


def _run_row(name: str, d: dict[str, Any]) -> dict[str, Any]:
    t = d.get("totals", {})
    return {"source": name, "scenario": d.get("scenario"), "model": d.get("model"), "gpu": d.get("gpu"),
            "nodes": d.get("nodes"), "gpus_per_node": d.get("gpus_per_node"), "mode": d.get("mode"),
            "gpus": (d.get("nodes") or 0) * (d.get("gpus_per_node") or 0) or None,
            "throughput_tokens_per_s": d.get("throughput_tokens_per_s"),
            "tokens_per_s_per_gpu": d.get("tokens_per_s_per_gpu"), "iteration_time_s": d.get("iteration_time_s"),
            "gpu_load_max_over_mean": t.get("mean_layer_gpu_load_max_over_mean"), "waiting_s": t.get("waiting_s"),
            "inter_node_bytes": t.get("inter_node_bytes")}


def multi_rows(items: list[tuple[str, str, Any]], rank_by: str = "throughput-per-gpu",
               prices: objective.Prices = None) -> tuple[list[dict[str, Any]], int | None]:
    rows: list[dict[str, Any]] = []
    for name, kind, data in items:
        if kind == "run":
            rows.append(_run_row(name, data))
        elif kind == "plan":
            rows += [{"source": name, **r} for r in data["rows"] if r.get("feasible")]
        elif kind in ("compare", "sweep"):
            rows += [{"source": name, **r} for r in data]
        else:
            rows.append({"source": name, "kind": kind})
    best = objective.best(rows, rank_by, prices)
    if any(kind == "plan" for _, kind, _ in items):
        priced = [i for i, r in enumerate(rows) if r.get("meets_target") and r.get("cost_per_hour")]
        best = min(priced, key=lambda i: rows[i]["cost_per_hour"]) if priced else best
    return rows, best


def multi_figures(items: list[tuple[str, str, Any]]) -> list[dict]:
    kinds = {kind for _, kind, _ in items}
    if kinds == {"run"}:
        names = [n for n, _, _ in items]
        return [charts.bar(f"{label} by run", "The runs side by side, as each result.json reports it.", names,
                           unit, [{"name": label, "y": [d[key] * scale for _, _, d in items]}], xlabel="run",
                           yunit=unit) for label, key, scale, unit in _RUN_FIGURES]
    if kinds == {"plan"}:
        series = []
        for name, _, d in items:
            best: dict[int, float] = {}
            for r in d["rows"]:
                if r.get("feasible") and r.get("output_tokens_per_s"):
                    best[r["gpus"]] = max(best.get(r["gpus"], 0.0), r["output_tokens_per_s"] / 1e3)
            series.append({"name": name, "x": sorted(best), "y": [best[x] for x in sorted(best)]})
        return [charts.line("Capacity at the SLO, plans overlaid", "The best feasible row per GPU count of each "
                            "plan.", "GPUs", "output k tokens/s at the SLO", series, yunit="k tokens/s")]
    return []


def multi_summary(items: list[tuple[str, str, Any]], rank_by: str = "throughput-per-gpu",
                  prices: objective.Prices = None) -> list[str]:
    lines = [f"{len(items)} results compared: " + ", ".join(f"{n} ({k})" for n, k, _ in items) + "."]
    runs = [_run_row(n, d) for n, k, d in items if k == "run"]
    at = objective.best(runs, rank_by, prices) if len(runs) > 1 else None
    if at is not None:
        worst = min(runs, key=lambda r: r["throughput_tokens_per_s"])
        lines.append(objective.recommend_line(
            runs[at], rank_by, prices, f"{runs[at]['source']} ({runs[at]['throughput_tokens_per_s']:,.0f} tokens/s, "
            f"{runs[at]['throughput_tokens_per_s'] / worst['throughput_tokens_per_s']:.2f}x the slowest, "
            f"{worst['source']})"))
    plans = [(n, d) for n, k, d in items if k == "plan" and d.get("best")]
    if plans:
        best = min(plans, key=lambda x: x[1]["best"]["cost_per_hour"])
        lines.append(f"Recommendation: {best[0]}: {best[1]['best']['label']}, max_batch "
                     f"{best[1]['best']['max_batch']} (${best[1]['best']['cost_per_hour']:,.2f}/h), the cheapest "
                     "that meets its target.")
    return lines
