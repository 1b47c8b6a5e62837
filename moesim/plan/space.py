"""The search space: every deployment a plan can try, as a scenario dict, with its cost.

A deployment is GPU type × nodes × shape (aggregated, or disaggregated with a prefill share) × EP size ×
micro-batches × placement × redundant slots × node limit × attention TP. The batch limit is searched
inside each deployment (moesim.plan.search), because it changes no iteration surface.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from moesim.plan.spec import PlanSpec


def redundant_for(experts: int, gpus: int, slots: int | None) -> int:
    """Redundant experts that give every one of ``gpus`` GPUs the same number of slots, with ``slots``
    extra per GPU: the fewest that fill them evenly, plus slots × gpus. 256 experts: 0 on 32 GPUs,
    320 on 576 (DeepSeek-V3's EP144 decode uses 32 on 144: 288 = 2 per GPU). None: no replicas at all
    (tensor-parallel experts)."""
    if slots is None:
        return 0
    return (-experts) % gpus + slots * gpus


@dataclass
class Deployment:
    """One point of the space (the batch limit is searched per deployment)."""

    gpu: str
    nodes: int
    shape: str  # aggregated | disaggregated
    ep_gpus: int  # aggregated: per instance; disaggregated: the prefill side's
    decode_ep_gpus: int | None
    prefill_gpus: int | None
    micro_batches: int
    placement: str
    redundant_slots: int
    node_limit: int | None
    attention_tp: int
    price_per_hour: float
    gpus: int
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    moe_tp: int = 1  # tensor-parallel experts over the attention TP group (1: expert parallel)
    engine: str | None = None  # an engine profile's scheduler defaults (None: the serving section's)

    @property
    def cost_per_hour(self) -> float:
        return self.gpus * self.price_per_hour

    def label(self) -> str:
        shape = (f"agg EP{self.ep_gpus}x{self.gpus // self.ep_gpus}" if self.shape == "aggregated" else
                 f"disagg P{self.prefill_gpus}/D{self.gpus - self.prefill_gpus}")
        return (f"{self.gpu} {self.nodes}n {shape} mb{self.micro_batches} {self.placement}+{self.redundant_slots}"
                f"{'' if self.node_limit is None else f' nl{self.node_limit}'}"
                f"{'' if self.attention_tp == 1 else f' tp{self.attention_tp}'}"
                f"{'' if self.moe_tp == 1 else ' moe-tp'}{'' if self.engine is None else f' {self.engine}'}")

    def row(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "nodes": self.nodes, "gpus": self.gpus, "deployment": self.shape,
                "ep_gpus": self.ep_gpus, "prefill_gpus": self.prefill_gpus, "decode_ep_gpus": self.decode_ep_gpus,
                "micro_batches": self.micro_batches, "placement": self.placement,
                "redundant_slots": self.redundant_slots, "node_limit": self.node_limit,
                "attention_tp": self.attention_tp, "moe_tp": self.moe_tp, "engine": self.engine,
                "cost_per_hour": self.cost_per_hour,
                "label": self.label()}


def _ep_sizes(p: PlanSpec, gpus: int) -> list[int]:
    gpn = p.gpus_per_node
    if p.search.ep_gpus != "auto":
        return [e for e in p.search.ep_gpus if gpus % e == 0] or list(p.search.ep_gpus)
    return [k * gpn for k in range(1, gpus // gpn + 1) if gpus % (k * gpn) == 0]


def _shapes(p: PlanSpec, nodes: int) -> list[tuple[str, int, int | None, int | None]]:
    """(shape, ep_gpus, prefill_gpus, decode_ep_gpus) for a node count."""
    gpn, world, out = p.gpus_per_node, nodes * p.gpus_per_node, []
    for shape in p.search.deployment:
        if shape == "aggregated":
            out += [("aggregated", e, None, None) for e in _ep_sizes(p, world)]
            continue
        pre_nodes = sorted({min(nodes - 1, max(1, round(s * nodes))) for s in p.search.prefill_share})
        out += [("disaggregated", pn * gpn, pn * gpn, (nodes - pn) * gpn) for pn in pre_nodes if 0 < pn < nodes]
    return out


def deployments(p: PlanSpec) -> list[Deployment]:
    """Every deployment of the space, in a stable order."""
    out = []
    sr = p.search
    for gpu, nodes in itertools.product(p.gpus, sr.nodes):
        for shape, axes in itertools.product(_shapes(p, nodes), itertools.product(
                sr.micro_batches, sr.placement, sr.redundant_slots, sr.node_limit, sr.attention_tp, sr.moe,
                sr.engine)):
            mb, pl, slots, nl, tp, moe, engine = axes
            if moe == "tp" and not _tp_experts(sr, mb, pl, slots, nl, tp):
                continue
            out.append(Deployment(gpu, nodes, shape[0], shape[1], shape[3], shape[2], mb, pl, slots, nl, tp,
                                  p.gpus[gpu].price_per_hour, nodes * p.gpus_per_node,
                                  moe_tp=tp if moe == "tp" else 1, engine=engine))
    return out


def _tp_experts(sr: Any, mb: int, pl: str, slots: int, nl: int | None, tp: int) -> bool:
    """Whether tensor-parallel experts apply to this combination: a TP group, one micro-batch, no node limit;
    placement and redundancy do not apply to them (only the first listed of each is kept)."""
    return tp > 1 and mb == 1 and nl is None and pl == sr.placement[0] and slots == sr.redundant_slots[0]


def scenario_dict(p: PlanSpec, d: Deployment, max_batch: int, experts: int) -> dict[str, Any]:
    """The scenario (with its serving section) of a deployment at one batch limit."""
    base = dict(p.scenario)
    router = dict(base.get("router") or {})
    if d.node_limit:
        router["limit"] = {"scope": "nodes", "max": d.node_limit}
    sv = {k: v for k, v in p.serving.items()}
    if p.target.concurrency and "load" not in sv:  # a concurrency target: closed loop, the concurrency searched
        sv["load"] = {"concurrency": 1}
    slots = d.redundant_slots if d.attention_tp == 1 else None  # experts inside a TP group: no replicas
    if d.shape == "aggregated":
        dep: dict[str, Any] = {"kind": "aggregated", "ep_gpus": d.ep_gpus,
                               "redundant_experts": redundant_for(experts, d.ep_gpus, slots)}
    else:
        dg = d.gpus - d.prefill_gpus
        dep = {"kind": "disaggregated",
               "prefill": {"gpus": d.prefill_gpus, "ep_gpus": d.ep_gpus,
                           "redundant_experts": redundant_for(experts, d.ep_gpus, slots)},
               "decode": {"gpus": dg, "ep_gpus": d.decode_ep_gpus,
                          "redundant_experts": redundant_for(experts, d.decode_ep_gpus, slots)}}
    red = redundant_for(experts, d.gpus, slots)  # the whole cluster's (checked, not simulated)
    sv["deployment"] = dep
    sv["scheduler"] = {"max_batch": max_batch}
    if d.engine is None and sv.get("engine") is None:
        sv["scheduler"]["token_budget"] = p.search.token_budget
    else:  # the engine's budget; the batch limit stays the planner's
        sv["engine"] = d.engine or sv["engine"]
    return {**base, "name": d.label(), "seed": p.seed, "model": p.model, "router": router,
            "cluster": {**(base.get("cluster") or {}), "gpu": d.gpu, "nodes": d.nodes,
                        "gpus_per_node": p.gpus_per_node},
            "placement": {**(base.get("placement") or {}), "kind": d.placement, "redundant_experts": red},
            "workload": {**(base.get("workload") or {}), "micro_batches": d.micro_batches,
                         "attention_tp": d.attention_tp, "moe_tp": d.moe_tp},
            "serving": sv}
