"""Report figures and summary lines for serving runs (``moesim serve -o``) and serving plans
(``moesim plan -o``). Reads result files, never imports the engine."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np


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


def serve_figures(folder: Path, fig_png, plt) -> list[tuple[str, str, bytes]]:
    """Queue, batch and KV use over time per role; TTFT and TPOT distributions against the SLO."""
    tl, rq = _read_csv(folder / "timeline.csv"), _read_csv(folder / "requests.csv")
    out = []
    if tl:
        fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
        for role in sorted(set(tl["role"].tolist())):
            sel = tl["role"] == role
            for ax, key, name in ((axes[0], "waiting", "waiting requests"), (axes[1], "running", "running sequences"),
                                  (axes[2], "kv_utilisation", "KV cache used")):
                x, y = _binned(tl["start_s"][sel], tl[key][sel].astype(float))
                ax.plot(x, y, label=role)
                ax.set_ylabel(name)
        axes[2].set_xlabel("time (s)")
        axes[0].legend(fontsize=7)
        out.append(("Queue, batch and KV cache over time", "Per role, averaged over instances and time bins.",
                    fig_png(fig)))
    if rq:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, key, name in ((axes[0], "ttft_s", "TTFT (s)"), (axes[1], "tpot_s", "TPOT (ms)")):
            v = rq[key][np.isfinite(rq[key])] * (1e3 if key == "tpot_s" else 1)
            if v.size:
                ax.plot(np.sort(v), np.linspace(0, 1, v.size), lw=1.5)
            ax.set(xlabel=name, ylabel="share of requests", title=f"{name.split()[0]} distribution")
        out.append(("Latency distributions", "Cumulative share of requests by TTFT and TPOT.", fig_png(fig)))
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


def plan_figures(doc: dict[str, Any], fig_png, plt) -> list[tuple[str, str, bytes]]:
    """SLO throughput and cost per million tokens against GPUs, one series per GPU type and shape."""
    ok = [r for r in doc["rows"] if r["feasible"] and r["output_tokens_per_s"]]
    if not ok:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault(f"{r['gpu']} {r['deployment']}", []).append(r)
    for name, rs in sorted(groups.items()):
        best: dict[int, dict[str, Any]] = {}
        for r in rs:  # the best row per GPU count
            if r["gpus"] not in best or r["output_tokens_per_s"] > best[r["gpus"]]["output_tokens_per_s"]:
                best[r["gpus"]] = r
        xs = sorted(best)
        axes[0].plot(xs, [best[x]["output_tokens_per_s"] / 1e3 for x in xs], "o-", label=name)
        axes[1].plot(xs, [best[x]["cost_per_million_tokens"] for x in xs], "o-", label=name)
    target = (doc.get("target") or {}).get("output_tokens_per_s")
    if target:
        axes[0].axhline(target / 1e3, color="grey", ls="--", lw=1, label="target")
    axes[0].set(xlabel="GPUs", ylabel="output k tokens/s at the SLO", title="Capacity at the SLO")
    axes[1].set(xlabel="GPUs", ylabel="USD per million output tokens", title="Cost per million tokens")
    axes[0].legend(fontsize=7)
    return [("Capacity and cost against GPUs", "Best batch limit per GPU count; infeasible rows are left out "
             "(the table says why).", fig_png(fig))]


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
