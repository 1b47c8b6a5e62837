"""Typed, frozen result records: what a run reports. Built in one place (``metrics.summarize``) and read by
attribute everywhere in the library; ``Summary.to_dict`` is the JSON document users and files see.

Time fields in seconds, bytes in bytes. Stage times are *exposed* times on a timeline: every instant of a
window is counted once, for the first compute stage running then (program order), else the first
communication stage moving data then, else as waiting; so a row's stage times plus its waiting sum to its
``time_s``, whatever overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _stage_keys(stages: dict[str, float], vocabulary: tuple[str, ...]) -> dict[str, float]:
    return {f"{n}_s": float(stages.get(n, 0.0)) for n in vocabulary}


@dataclass(frozen=True)
class LayerRow:
    """One program (a pass through one MoE layer) on its critical GPU, inside its share of the timeline."""

    layer: int
    block: int
    pass_: str
    step: int
    micro_batch: int
    time_s: float  # the row's share of its timeline: its end minus the previous row's end
    stages: dict[str, float]  # exposed seconds per stage on the critical GPU
    waiting_s: float  # time_s minus the stages: waiting for partners, links or a busy GPU
    critical_gpu: int
    gpu_load_max_over_mean: float
    expert_load_max_over_mean: float
    intra_node_bytes: float
    inter_node_bytes: float
    dropped_tokens: float
    distinct_nodes_per_token: float
    expert_gini: float
    expert_max_vio: float
    gpu_max_vio: float
    tokens_by_distinct_devices: tuple[float, ...]
    tokens_by_distinct_nodes: tuple[float, ...]
    inter_node_bytes_per_token: float

    def to_dict(self, vocabulary: tuple[str, ...]) -> dict[str, Any]:
        return {"layer": self.layer, "block": self.block, "pass": self.pass_, "step": self.step,
                "micro_batch": self.micro_batch, "time_s": self.time_s, **_stage_keys(self.stages, vocabulary),
                "waiting_s": self.waiting_s, "critical_gpu": self.critical_gpu,
                "gpu_load_max_over_mean": self.gpu_load_max_over_mean,
                "expert_load_max_over_mean": self.expert_load_max_over_mean,
                "intra_node_bytes": self.intra_node_bytes, "inter_node_bytes": self.inter_node_bytes,
                "dropped_tokens": self.dropped_tokens, "distinct_nodes_per_token": self.distinct_nodes_per_token,
                "expert_gini": self.expert_gini, "expert_max_vio": self.expert_max_vio,
                "gpu_max_vio": self.gpu_max_vio,
                "tokens_by_distinct_devices": list(self.tokens_by_distinct_devices),
                "tokens_by_distinct_nodes": list(self.tokens_by_distinct_nodes),
                "inter_node_bytes_per_token": self.inter_node_bytes_per_token}


@dataclass(frozen=True)
class GpuRow:
    """One GPU over the whole iteration: exposed stage times on its own timeline (all micro-batches)."""

    gpu: int
    node: int
    expert_tokens: float
    stages: dict[str, float]
    waiting_s: float
    finish_s: float
    busy_fraction: float  # exposed compute time / finish time
    sent_bytes: float
    received_bytes: float

    def to_dict(self, vocabulary: tuple[str, ...]) -> dict[str, Any]:
        return {"gpu": self.gpu, "node": self.node, "expert_tokens": self.expert_tokens,
                **_stage_keys(self.stages, vocabulary), "waiting_s": self.waiting_s, "finish_s": self.finish_s,
                "busy_fraction": self.busy_fraction, "sent_bytes": self.sent_bytes,
                "received_bytes": self.received_bytes}


@dataclass(frozen=True)
class Timeline:
    """Where one micro-batch's time goes (its own rows summed): stages + waiting = end_s."""

    micro_batch: int
    end_s: float
    stages: dict[str, float]
    waiting_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"micro_batch": self.micro_batch, "end_s": self.end_s, "stages": dict(self.stages),
                "waiting_s": self.waiting_s}


@dataclass(frozen=True)
class Totals:
    """The iteration: bytes, drops and loads summed over rows; ``stages`` + ``waiting_s`` is the critical
    path (each program's window on its critical GPU, all micro-batches together) and sums to the
    iteration time."""

    intra_node_bytes: float
    inter_node_bytes: float
    dropped_tokens: float
    computed_copies: float
    gpu_load_max_over_mean: float
    mean_layer_gpu_load_max_over_mean: float
    stages: dict[str, float]
    waiting_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"intra_node_bytes": self.intra_node_bytes, "inter_node_bytes": self.inter_node_bytes,
                "dropped_tokens": self.dropped_tokens, "computed_copies": self.computed_copies,
                "gpu_load_max_over_mean": self.gpu_load_max_over_mean,
                "mean_layer_gpu_load_max_over_mean": self.mean_layer_gpu_load_max_over_mean,
                "stages": dict(self.stages), "waiting_s": self.waiting_s,
                **{f"{k}_s": v for k, v in self.stages.items()}}


@dataclass(frozen=True)
class Summary:
    """One simulated iteration. ``meta``: the scenario's resolved facts (model, cluster, routing, fidelity,
    cost sources, memory), as plain data."""

    meta: dict[str, Any]
    scope: str  # moe_layers | whole_model
    context_tokens: int
    gpus: int
    nodes: int
    iteration_time_s: float
    tokens_per_iteration: int
    stage_names: tuple[str, ...]  # every stage name of the run, in first-seen order
    layers: tuple[LayerRow, ...]
    gpu_rows: tuple[GpuRow, ...]
    totals: Totals
    micro_batches: tuple[Timeline, ...]
    gradient_sync_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput_tokens_per_s(self) -> float:
        it = self.iteration_time_s
        return self.tokens_per_iteration / it if it > 0 else 0.0

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.throughput_tokens_per_s / max(self.gpus, 1)

    @property
    def tokens_per_s_per_node(self) -> float:
        return self.throughput_tokens_per_s / max(self.nodes, 1)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (sorted keys when written)."""
        names = self.stage_names
        doc = {**self.meta, "throughput_tokens_per_s": self.throughput_tokens_per_s,
               "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu, "tokens_per_s_per_node": self.tokens_per_s_per_node,
               "throughput_scope": self.scope, "context_tokens": self.context_tokens,
               "iteration_time_s": self.iteration_time_s, "tokens_per_iteration": self.tokens_per_iteration,
               "stage_names": list(names), "layers": [r.to_dict(names) for r in self.layers],
               "gpus": [g.to_dict(names) for g in self.gpu_rows], "totals": self.totals.to_dict(),
               "micro_batches": [t.to_dict() for t in self.micro_batches], **self.extra}
        if self.meta.get("mode") == "training":
            doc["gradient_sync_s"] = self.gradient_sync_s
        return doc
