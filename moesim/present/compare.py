"""``moesim compare``'s rows as a readable table and a chart (the report palette, ``charts.PALETTE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moesim.present.charts import PALETTE


def table(rows: list[dict[str, Any]]) -> str:
    """A readable table, best iteration time marked."""
    ok = [r for r in rows if not r.get("error")]
    best = min((r["iteration_time_s"] for r in ok), default=None)
    out = [f"{'placement':<18}{'redundant':>9}{'iter ms':>11}{'tokens/s':>14}{'GPU max/mean':>13}"
           f"{'inter-node GB':>14}{'extra GiB/GPU':>14}"]
    for r in rows:
        if r.get("error"):
            out.append(f"{r['placement']:<18}{r['redundant_experts'] or 0:>9}  error: {r['error']}")
            continue
        mark = "  <- fastest" if r["iteration_time_s"] == best else ""
        out.append(f"{r['placement']:<18}{r['redundant_experts']:>9}{r['iteration_time_s'] * 1e3:>11.3f}"
                   f"{r['throughput_tokens_per_s']:>14,.0f}{r['gpu_load_max_over_mean']:>13.3f}"
                   f"{r['inter_node_bytes'] / 1e9:>14.2f}{r['extra_memory_per_gpu_bytes'] / 2**30:>14.2f}{mark}")
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Iteration time per variant (bars) with GPU load max/mean (dots, right axis)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    ok = [r for r in rows if not r.get("error")]
    labels = [f"{r['placement']}\n+{r['redundant_experts']}" for r in ok]
    fig = Figure(figsize=(max(6.4, 0.9 * len(ok) + 2), 4.6), dpi=120)
    ax = fig.subplots()
    ax.bar(range(len(ok)), [r["iteration_time_s"] * 1e3 for r in ok], color=PALETTE[0], label="iteration time")
    ax.set_xticks(range(len(ok)), labels, fontsize=8)
    ax.set_ylabel("iteration time, MoE layers (ms)")
    ax2 = ax.twinx()
    ax2.plot(range(len(ok)), [r["gpu_load_max_over_mean"] for r in ok], "o", color=PALETTE[1],
             label="GPU load max/mean")
    ax2.set_ylabel("GPU load max / mean")
    ax2.set_ylim(bottom=1.0)
    ax.set_title(title)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
