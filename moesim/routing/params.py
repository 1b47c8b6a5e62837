"""Effective routing parameters: the model's own, overridden by the scenario's ``router`` section."""

from __future__ import annotations

from dataclasses import dataclass

from moesim.config.schema import Scenario


@dataclass(frozen=True)
class RoutingParams:
    """Token-choice routing rule for one model. ``topk_group == n_group`` means no group limit."""

    experts: int
    top_k: int
    n_group: int
    topk_group: int
    group_score: str  # "max" (DeepSeek-V2) or "sum_top2" (DeepSeek-V3)
    scoring_func: str  # "softmax" or "sigmoid"
    capacity_factor: float | None

    @property
    def group_limited(self) -> bool:
        return self.topk_group < self.n_group

    @classmethod
    def from_scenario(cls, s: Scenario) -> RoutingParams:
        m, r = s.model, s.router
        n_group = r.n_group or m.n_group
        return cls(experts=m.n_routed_experts, top_k=r.top_k or m.num_experts_per_tok, n_group=n_group,
                   topk_group=r.topk_group or m.topk_group or n_group,
                   group_score=r.group_score or m.group_score, scoring_func=r.scoring_func or m.scoring_func,
                   capacity_factor=r.capacity_factor)
