"""Report figures and summary lines for serving runs (``moesim serve -o``) and serving plans
(``moesim plan -o``). Reads result files, never imports the engine."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from moesim.present import charts


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        try:
            out[k] = np.array([float(v) if v != "" else np.nan for v in vals])
        except ValueError:
            out[k] = np.array(vals, dtype=object)
    return out


def _binned(t: np.ndarray, v: np.ndarray, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Means of v over equal time bins (plots of long runs stay readable)."""
    if not t.size:
        return t, v
    edges = np.linspace(t.min(), t.max() + 1e-9, bins + 1)
    idx = np.clip(np.digitize(t, edges) - 1, 0, bins - 1)
    cnt = np.bincount(idx, minlength=bins)
    s = np.bincount(idx, weights=v, minlength=bins)
    keep = cnt > 0
    return (edges[:-1] + edges[1:])[keep] / 2, s[keep] / cnt[keep]


def serve_figures(folder: Path) -> list[dict]:
    """Queue, batch and KV use over time per role; TTFT and TPOT distributions."""
    tl, rq = _read_csv(folder / "timeline.csv"), _read_csv(folder / "requests.csv")
    out = []
    if tl:
        roles = sorted(set(tl["role"].tolist()))
        for key, name in (("waiting", "waiting requests"), ("running", "running sequences"),
                          ("kv_utilisation", "KV cache used (share)")):
            series = []
            for role in roles:
                sel = tl["role"] == role
                x, y = _binned(tl["start_s"][sel], tl[key][sel].astype(float))
                series.append({"name": role, "x": x.tolist(), "y": y.tolist()})
            out.append(charts.line(f"{name.capitalize()} over time", "Per role, averaged over instances and "
                                   "time bins.", "time (s)", name, series))
    if rq:
        series = []
        for key, name, scale in (("ttft_s", "TTFT", 1.0), ("tpot_s", "TPOT", 1e3)):
            v = np.sort(rq[key][np.isfinite(rq[key])] * scale)
            if v.size:
                step = max(1, v.size // 400)  # at most ~400 points per curve
                q = np.linspace(0, 1, v.size)
                series.append((name, key, v[::step].tolist(), q[::step].tolist()))
        for name, key, x, y in series:
            unit = "s" if key == "ttft_s" else "ms"
            out.append(charts.line(f"{name} distribution", f"Cumulative share of requests by {name}.",
                                   f"{name} ({unit})", "share of requests", [{"name": name, "x": x, "y": y}],
                                   zero=True))
    return out


def serve_summary(d: dict[str, Any]) -> list[str]:
    slo, tp = d["slo"], d["throughput"]
    p = slo["percentile"]
    errs = [v["holdout_error"]["max"] for v in d["surfaces"].values() if v.get("holdout_error")]
    return [f"{d['scenario']}: {d['model']} on {d['nodes']}×{d['gpus_per_node']} {d['gpu']}, "
            f"{d['deployment']['kind']}; {d['requests']} requests ({d['workload_source']}).",
            f"TTFT p50 {d['ttft_s']['p50'] * 1e3:,.0f} ms, p{p} {slo[f'ttft_p{p}_s'] * 1e3:,.0f} ms; TPOT p50 "
            f"{(d['tpot_s']['p50'] or 0) * 1e3:,.1f} ms, p{p} {slo[f'tpot_p{p}_s'] * 1e3:,.1f} ms.",
            f"{tp['output_tokens_per_s']:,.0f} output tokens/s ({tp['output_tokens_per_s_per_gpu']:,.1f} per GPU); "
            f"SLO {'met' if slo['met'] else 'not met'}, {slo['attainment']:.1%} of requests within both, goodput "
            f"{slo['goodput_requests_per_s']:.2f} requests/s.",
            f"Throughput scope: {d['throughput_scope']}. Iteration surfaces: held-out interpolation error max "
            + (f"{max(errs):.1%}." if errs else "not measured.")]


def plan_figures(doc: dict[str, Any]) -> list[dict]:
    """SLO throughput and cost per million tokens against GPUs, one series per GPU type and shape."""
    ok = [r for r in doc["rows"] if r["feasible"] and r["output_tokens_per_s"]]
    if not ok:
        return []
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault(f"{r['gpu']} {r['deployment']}", []).append(r)
    cap, cost = [], []
    for name, rs in sorted(groups.items()):
        best: dict[int, dict[str, Any]] = {}
        for r in rs:  # the best row per GPU count
            if r["gpus"] not in best or r["output_tokens_per_s"] > best[r["gpus"]]["output_tokens_per_s"]:
                best[r["gpus"]] = r
        xs = sorted(best)
        cap.append({"name": name, "x": xs, "y": [best[x]["output_tokens_per_s"] / 1e3 for x in xs]})
        cost.append({"name": name, "x": xs, "y": [best[x]["cost_per_million_tokens"] for x in xs]})
    target = (doc.get("target") or {}).get("output_tokens_per_s")
    hl = [{"y": target / 1e3, "label": "target"}] if target else []
    note = "Best batch limit per GPU count; infeasible rows are left out (the table says why)."
    return [charts.line("Capacity at the SLO", note, "GPUs", "output k tokens/s at the SLO", cap, hlines=hl,
                        yunit="k tokens/s"),
            charts.line("Cost per million tokens", note, "GPUs", "USD per million output tokens", cost, yunit="$")]


def plan_summary(data: dict[str, Any]) -> list[str]:
    b, c, slo = data["best"], data["counts"], data["slo"]
    p = slo["percentile"]
    head = (f"{c['deployments']} deployments, {c['simulated']} simulated; SLO p{p} TTFT ≤ {slo['ttft_s'] * 1e3:g} ms, "
            f"TPOT ≤ {slo['tpot_s'] * 1e3:g} ms; throughput scope {data['throughput_scope']}"
            + ("; interrupted (partial)." if data.get("interrupted") else "."))
    lines = [head]
    for gpu, r in data["best_per_gpu"].items():
        lines.append(f"{gpu}: " + (f"{r['label']}, max_batch {r['max_batch']}: {r['output_tokens_per_s']:,.0f} "
                                   f"tokens/s, ${r['cost_per_hour']:,.2f}/h, ${r['cost_per_million_tokens']:.2f}/Mtok"
                                   if r else "nothing meets the target"))
    lines.append("Recommendation: " + (f"{b['label']}, max_batch {b['max_batch']} (${b['cost_per_hour']:,.2f}/h)."
                                       if b else "none meets the target; add nodes or GPU types, or relax the SLO."))
    return lines
