"""Validation output: readable tables (stdout), a Markdown report and a predicted-vs-measured plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tables(rows: list[dict[str, Any]], errors: dict[str, dict[str, float]],
           deepep: list[dict[str, Any]] | None, serving: list[dict[str, Any]] | None = None,
           low_latency: list[dict[str, Any]] | None = None, cases: bool = True) -> str:
    """The error summary per piece, every case (unless ``cases`` is False), and the DeepEP comparison, as
    Markdown tables."""
    out = ["| piece | n | MAPE % | P90 % | max % | bias % |", "|---|---|---|---|---|---|"]
    for piece, e in errors.items():
        out.append(f"| {piece} | {e['n']} | {e['mape']:.1f} | {e['p90']:.1f} | {e['max']:.1f} | {e['bias']:+.1f} |")
    if cases:
        out += ["", "| case | piece | measured ms | predicted ms | error % |", "|---|---|---|---|---|"]
    for r in rows if cases else []:
        err = 100 * (r["predicted_s"] - r["measured_s"]) / r["measured_s"]
        out.append(f"| {r['case']} | {r['piece']} | {r['measured_s'] * 1e3:.3f} | {r['predicted_s'] * 1e3:.3f} | "
                   f"{err:+.1f} |")
    if deepep:
        out += ["", "| DeepEP normal kernels (H800) | variant | EP | dispatch sim GB/s | published | error % | "
                "combine sim GB/s | published | error % |", "|---|---|---|---|---|---|---|---|---|"]
        for d in deepep:
            ed = 100 * (d["dispatch_sim_GBps"] / d["dispatch_published_GBps"] - 1)
            ec = 100 * (d["combine_sim_GBps"] / d["combine_published_GBps"] - 1)
            out.append(f"| {d['type']} | {d.get('variant', 'catalogue')} | {d['ep']} | {d['dispatch_sim_GBps']:.1f} | "
                       f"{d['dispatch_published_GBps']:.0f} | {ed:+.1f} | {d['combine_sim_GBps']:.1f} | "
                       f"{d['combine_published_GBps']:.0f} | {ec:+.1f} |")
    if low_latency:
        out += _low_latency_table(low_latency)
    if serving:
        out += ["", "| DeepSeek-V3 serving (H800, catalogue figures, whole model) | sim tokens/s per node | "
                "published | error % | settings |", "|---|---|---|---|---|"]
        for r in serving:
            extra = (f"; sim {r['sim_per_sequence_tokens_per_s']:.1f} tokens/s per sequence (published 20-22)"
                     if r["sim_per_sequence_tokens_per_s"] else "; published counts cache hits (56.3%)")
            out.append(f"| {r['mode']} | {r['sim_tokens_per_s_per_node']:,.0f} | "
                       f"{r['published_tokens_per_s_per_node']:,.0f} | {r['error_percent']:+.1f} | "
                       f"{r['settings']}{extra} |")
    return "\n".join(out)


def _low_latency_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["", "| DeepEP low latency (H800, catalogue figures, 128 tokens/GPU) | EP | dispatch sim µs | published | "
           "error % | combine sim µs | published | error % |", "|---|---|---|---|---|---|---|---|"]
    for d in rows:
        ed = 100 * (d["dispatch_sim_us"] / d["dispatch_published_us"] - 1)
        ec = 100 * (d["combine_sim_us"] / d["combine_published_us"] - 1)
        kind = "intranode (published: RDMA; sim: NVLink)" if d["ep"] == 8 else "internode"
        out.append(f"| {kind} | {d['ep']} | {d['dispatch_sim_us']:.0f} | {d['dispatch_published_us']:.0f} | {ed:+.1f} "
                   f"| {d['combine_sim_us']:.0f} | {d['combine_published_us']:.0f} | {ec:+.1f} |")
    return out


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Log-log scatter of predicted against measured time, one colour per piece, with the y = x line."""
    from matplotlib.figure import Figure  # plotting only when a report is written; no pyplot state

    fig = Figure(figsize=(6.4, 5.2), dpi=120)
    ax = fig.subplots()
    pieces = sorted({r["piece"] for r in rows})
    for piece in pieces:
        sel = [r for r in rows if r["piece"] == piece]
        ep = piece.startswith("ep")  # 2-process cases: triangles; single-process: circles
        ax.scatter([r["measured_s"] * 1e3 for r in sel], [r["predicted_s"] * 1e3 for r in sel], label=piece,
                   s=34 if "end to end" in piece else 22, marker="^" if ep else "o",
                   edgecolors="black" if "end to end" in piece else "none", linewidths=0.6)
    lo = min(min(r["measured_s"], r["predicted_s"]) for r in rows) * 1e3 / 1.5
    hi = max(max(r["measured_s"], r["predicted_s"]) for r in rows) * 1e3 * 1.5
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15, label="±10%")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured time (ms)",
           ylabel="predicted time (ms)", title=title)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path)


def write_report(folder: Path, profile: str, rows: list[dict[str, Any]], errors: dict[str, dict[str, float]],
                 deepep: list[dict[str, Any]] | None, command: str, drift: float | None = None,
                 serving: list[dict[str, Any]] | None = None,
                 low_latency: list[dict[str, Any]] | None = None, intro: str | None = None) -> None:
    """README.md + predicted_vs_measured.png in ``folder``. ``intro``: what the held-out cases are (default:
    those of a calibrate/ profile)."""
    folder.mkdir(parents=True, exist_ok=True)
    plot(rows, folder / "predicted_vs_measured.png", f"Held-out MoE layers, profile {profile}")
    text = [f"# Validation of profile `{profile}`", "",
            f"Measured by `{command}`; predictions by `moesim validate --profile {profile} --stored`.", "",
            intro or ("Held-out cases: token counts off the calibration grids, a biased router and a replayed Zipf "
                      "trace, a model shape (H=768, I=384) in no grid, and a 2-process expert-parallel layer with "
                      "all-to-all, replayed through the simulator's engine."), "",
            *([f"Machine speed check at validation time: expert GEMMs ran {drift:.2f}x the time they took at "
               "calibration (a shared machine drifts; predictions do not correct for it).", ""] if drift else []),
            "![predicted vs measured](predicted_vs_measured.png)",
            "", tables(rows, errors, deepep, serving, low_latency, cases=intro is None), ""]
    (folder / "README.md").write_text("\n".join(text), encoding="utf-8")
