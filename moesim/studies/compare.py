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
        "throughput_scope": sm.scope, "tokens_per_s_per_gpu": sm.tokens_per_s_per_gpu,
        "gpu": s.cluster.gpu.name, "gpus": b.topology.num_gpus,
        # per layer, then averaged: a sum over layers would hide each layer's hot GPU
        "gpu_load_max_over_mean": sm.totals.mean_layer_gpu_load_max_over_mean,
        "inter_node_bytes": sm.totals.inter_node_bytes,
        # replicas beyond one per expert, per GPU, every MoE layer
        "extra_memory_per_gpu_bytes": (slots - b.model.experts) / b.topology.num_gpus * expert_bytes
        * b.model.num_moe_layers,
        "rebalance_cost_s": 0.0, "error": None,
    }
