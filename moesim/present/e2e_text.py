"""``moesim validate e2e`` as text (per group and overall: MAPE and bias of median TTFT, median TPOT and
throughput per GPU, fit and test rows apart) and as a report page (measured vs predicted over concurrency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moesim.util.text import ranges

NAMES = (("ttft_s", "TTFT p50"), ("tpot_s", "TPOT p50"), ("tokens_per_s_per_gpu", "tok/s/GPU"))


def _cells(st: dict[str, Any]) -> str:
    return "  ".join(f"{st[m]['mape'] * 100:6.1f}% {st[m]['bias'] * 100:+6.1f}%" for m, _ in NAMES)


def table(doc: dict[str, Any]) -> str:
    """Groups, then the overall errors by split; MAPE then bias for each metric."""
    head = "  ".join(f"{label:>15}" for _, label in NAMES)
    lines = ["end-to-end: measured rows through moesim serve (MAPE, bias; fit and test rows apart)", "",
             f"  {'group':<34} {'rows':>4}  {head}"]
    for g, st in doc["groups"].items():
        lines.append(f"  {g:<34} {st['rows']:>4}  {_cells(st)}")
    lines.append("")
    for split, st in doc["overall"].items():
        lines.append(f"  {'all ' + split + ' rows':<34} {st['rows']:>4}  {_cells(st)}")
    if doc["failed"]:
        lines.append(f"\n  {doc['failed']} rows did not run: " + "; ".join(
            f"row {r['row']}: {r['error']}" for r in doc["rows"] if "error" in r))
    return "\n".join(lines) + "\n"


def write_report(doc: dict[str, Any], out: Path) -> list[Path]:
    """e2e.json, a README.md with the table and per-row errors, and e2e.png: measured vs predicted over
    concurrency, one panel per metric, one line per deployment group."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from moesim.util.files import to_json, write_atomic
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "e2e.json", to_json(doc))
    rows = [r for r in doc["rows"] if "error" not in r]
    lines = ["# End-to-end validation", "", "```", table(doc).rstrip(), "```", "",
             "| row | group | split | " + " | ".join(f"{label} measured | predicted | error" for _, label in NAMES)
             + " |", "|---|---|---|" + "---|---|---|" * len(NAMES)]
    for r in rows:
        cells = " | ".join(f"{r['measured'][m]:.4g} | {r['predicted'][m]:.4g} | {r['signed_error'][m] * 100:+.1f}%"
                           for m, _ in NAMES)
        lines.append(f"| {r['row']} | {r['group']} | {r['split']} | {cells} |")
    write_atomic(out / "README.md", "\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, len(NAMES), figsize=(5 * len(NAMES), 4))
    for ax, (m, label) in zip(axes, NAMES, strict=True):
        ax.axline((1, 1), slope=1, color="grey", lw=0.8)
        for g in sorted({r["group"] for r in rows}):
            sel = [r for r in rows if r["group"] == g]
            ax.scatter([r["measured"][m] for r in sel], [r["predicted"][m] for r in sel], s=14, label=g)
        ax.set(xscale="log", yscale="log", xlabel=f"measured {label}", ylabel=f"predicted {label}")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "e2e.png", dpi=110)
    plt.close(fig)
    curves(rows, out / "e2e_curves.png")
    lines.insert(4, "\n![measured vs predicted](e2e.png)\n\n![over concurrency](e2e_curves.png)\n")
    write_atomic(out / "README.md", "\n".join(lines) + "\n")
    return [out / "e2e.json", out / "README.md", out / "e2e.png", out / "e2e_curves.png"]


def curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Measured (solid) and predicted (dashed) over concurrency, one line pair per deployment (group and
    prompt / answer lengths), one panel per metric."""
    import matplotlib.pyplot as plt
    keys = sorted({(r["group"], r["isl"], r["osl"]) for r in rows})
    fig, axes = plt.subplots(1, len(NAMES), figsize=(5.5 * len(NAMES), 4.5))
    cmap = plt.get_cmap("tab20")
    for k, key in enumerate(keys):
        sel = sorted((r for r in rows if (r["group"], r["isl"], r["osl"]) == key), key=lambda r: r["concurrency"])
        x = [r["concurrency"] for r in sel]
        for ax, (m, _) in zip(axes, NAMES, strict=True):
            ax.plot(x, [r["measured"][m] for r in sel], "-o", ms=3, color=cmap(k % 20),
                    label=f"{key[0]} {key[1]}/{key[2]}")
            ax.plot(x, [r["predicted"][m] for r in sel], "--x", ms=3, color=cmap(k % 20))
    for ax, (_, label) in zip(axes, NAMES, strict=True):
        ax.set(xscale="log", yscale="log", xlabel="requests in flight", ylabel=label)
    axes[0].legend(fontsize=5, title="measured -, predicted --", title_fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_table(doc: dict[str, Any]) -> str:
    """The fitted terms (value, unit, rows), the surrogate's errors on fit and test rows, and the
    leave-one-group-out errors (each group predicted by terms fitted without it)."""
    head = "  ".join(f"{label:>15}" for _, label in NAMES)
    lines = [f"engine terms, {doc['label']} on rows {ranges(doc['fit_rows'])} "
             f"(test rows: {ranges(doc['test_rows'])})", ""]
    for eng, terms in doc["engines"].items():
        for k, v in terms.items():
            lines.append(f"  {eng:<8} {k:<16} {_shown(k, v)}  {doc['units'][k]}")
    lines += ["", f"  {'with the terms (fit surrogate)':<34} {'rows':>4}  {head}"]
    for split, st in doc["surrogate_errors"].items():
        lines.append(f"  {split + ' rows':<34} {st['rows']:>4}  {_cells(st)}")
    lines += ["", f"  {'leave one group out':<34} {'rows':>4}  {head}"]
    for g, st in doc["leave_one_group_out"].items():
        lines.append(f"  {g:<34} {st['rows']:>4}  {_cells(st)}")
    if "pooled" in doc:
        lines += ["", "  pooled over every engine (for an engine with no rows of its own, e.g. vllm):"]
        lines += [f"  {'any':<8} {k:<16} {_shown(k, v)}  {doc['units'][k]}" for k, v in doc["pooled"].items()]
    if "leave_one_engine_out" in doc:
        lines += ["", f"  {'leave one engine out (pooled)':<34} {'rows':>4}  {head}"]
        for e, st in doc["leave_one_engine_out"].items():
            lines.append(f"  {e + ' held out':<34} {st['rows']:>4}  {_cells(st)}")
            if "nothing fitted" in st:
                lines.append(f"  {'  ' + e + ' with no terms':<34} {st['rows']:>4}  {_cells(st['nothing fitted'])}")
    return "\n".join(lines) + "\n"


def _shown(k: str, v: float) -> str:
    return f"{v * 1e3:8.2f} ms" if k.endswith("_s") else f"{v:8.3f}   "
