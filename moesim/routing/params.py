"""Effective routing parameters: the model's own, overridden by the scenario's ``router`` section."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    rule: str = "token_choice"
    bias: tuple[float, ...] | None = None
    limit_scope: str | None = None  # "devices" / "nodes": group limit computed from the placement
    limit_max: int = 0
    limit_score: str = "max"
    capacity_scope: str = "expert"
    drop_policy: str = "position"
    hash_vocab: int = 50000
    hash_zipf: float = 1.0

    @property
    def bias_array(self) -> np.ndarray | None:
        return None if self.bias is None else np.asarray(self.bias, dtype=np.float32)

    @property
    def needs_dense(self) -> bool:
        """Rules that need every expert's score (the top-down sampler only knows the top ones)."""
        return self.bias is not None or self.limit_scope is not None or self.drop_policy == "probs"

    @property
    def group_limited(self) -> bool:
        return self.topk_group < self.n_group

    @classmethod
    def from_scenario(cls, s: Scenario) -> RoutingParams:
        m, r = s.model, s.router
        n_group = s.n_group
        lim = r.limit
        return cls(experts=m.n_routed_experts, top_k=s.top_k, n_group=n_group,
                   topk_group=r.topk_group or m.topk_group or n_group,
                   group_score=r.group_score or m.group_score, scoring_func=r.scoring_func or m.scoring_func,
                   capacity_factor=r.capacity_factor, rule=r.rule,
                   bias=tuple(r.bias) if r.bias is not None else None,
                   limit_scope=lim.scope if lim else None, limit_max=lim.max if lim else 0,
                   limit_score=(lim.score or ("max" if lim.scope == "devices" else "sum_top2")) if lim else "max",
                   capacity_scope=r.capacity_scope, drop_policy=r.drop_policy, hash_vocab=r.hash_vocab,
                   hash_zipf=r.hash_zipf)
