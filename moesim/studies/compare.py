"""Run one scenario under several placements (and redundant-expert counts) with the same router draws,
and collect one row per variant. The seed fixes the router statistics and every layer's routing streams,
so variants differ only in where experts live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from moesim.iteration.build import RouteReuse
from moesim.iteration.run import Result
from moesim.studies.single import run_file
from moesim.util.errors import MoesimError

FIELDS = ("placement", "redundant_experts", "replica_policy", "iteration_time_s", "throughput_tokens_per_s",
          "gpu_load_max_over_mean", "inter_node_bytes", "extra_memory_per_gpu_bytes", "rebalance_cost_s", "error")


def variants(placements: list[str], redundant: list[int] | None) -> list[tuple[str, int | None]]:
    """(placement, redundant experts or None for the scenario's) in the order they run."""
    return [(k, r) for k in placements for r in (redundant if redundant is not None else [None])]


def compare(path: str | Path, overrides: list[str], placements: list[str], redundant: list[int] | None,
            replica_policy: str | None = None, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per (placement, redundant) variant; a variant that cannot run keeps its error and the
    others still run. Variants route once: they share every layer's routing and the planning window
    (``build.RouteReuse``), which does not depend on where experts live (placement-limited routing is
    keyed on the placement). ``progress(label)`` is called after each variant. Ctrl-C raises
    ``Interrupted`` carrying the rows that finished."""
    rows: list[dict[str, Any]] = []
    reuse = RouteReuse()
    try:
        for kind, red in variants(placements, redundant):
            rows.append(_variant(path, overrides, kind, red, replica_policy, reuse))
            if progress:
                progress(f"{kind} +{red if red is not None else 'scenario'}")
    except KeyboardInterrupt:
        raise Interrupted(rows) from None
    return rows


class Interrupted(Exception):
    """Ctrl-C during a study; ``rows``: what finished before it."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(f"interrupted after {len(rows)} finished")
        self.rows = rows


def _variant(path, overrides, kind: str, red: int | None, replica_policy: str | None, reuse: RouteReuse) -> dict:
    extra = [f"placement.kind={kind}"] + ([] if red is None else [f"placement.redundant_experts={red}"])
    extra += [f"placement.replica_policy={replica_policy}"] if replica_policy else []
    try:
        return _row(run_file(path, [*overrides, *extra], reuse=reuse))
    except MoesimError as exc:
        return {"placement": kind, "redundant_experts": red, "error": str(exc)}


def _row(res: Result) -> dict[str, Any]:
    s, b, sm = res.built.scenario, res.built, res.summary
    slots = b.placement.phy2log.shape[1]
    expert_bytes = b.resolved.expert_bytes
    return {
        "placement": s.placement.kind, "redundant_experts": s.placement.redundant_experts,
        "replica_policy": s.placement.replica_policy,
        "iteration_time_s": sm.iteration_time_s, "throughput_tokens_per_s": sm.throughput_tokens_per_s,
        "throughput_scope": sm.scope,
        # per layer, then averaged: a sum over layers would hide each layer's hot GPU
        "gpu_load_max_over_mean": sm.totals.mean_layer_gpu_load_max_over_mean,
        "inter_node_bytes": sm.totals.inter_node_bytes,
        # replicas beyond one per expert, per GPU, every MoE layer
        "extra_memory_per_gpu_bytes": (slots - b.model.experts) / b.topology.num_gpus * expert_bytes
        * b.model.num_moe_layers,
        "rebalance_cost_s": 0.0, "error": None,
    }


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
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ok = [r for r in rows if not r.get("error")]
    labels = [f"{r['placement']}\n+{r['redundant_experts']}" for r in ok]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(ok) + 2), 4.6), dpi=120)
    ax.bar(range(len(ok)), [r["iteration_time_s"] * 1e3 for r in ok], color="#4C72B0", label="iteration time")
    ax.set_xticks(range(len(ok)), labels, fontsize=8)
    ax.set_ylabel("iteration time, MoE layers (ms)")
    ax2 = ax.twinx()
    ax2.plot(range(len(ok)), [r["gpu_load_max_over_mean"] for r in ok], "o", color="#C44E52",
             label="GPU load max/mean")
    ax2.set_ylabel("GPU load max / mean")
    ax2.set_ylim(bottom=1.0)
    ax.set_title(title)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
