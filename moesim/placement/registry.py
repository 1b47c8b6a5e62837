"""The placement registry: every strategy ``placement.kind`` may name, with what the planner must give it
and what it cannot do. The schema's check, the CLI's choices and completion, ``moesim list placements`` and
the docs read it; a new strategy is one module and one ``PLACEMENTS.register`` (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moesim.config.schema import Scenario
from moesim.placement.base import Placement
from moesim.util.registry import Registry


@dataclass(frozen=True)
class Strategy:
    """One placement strategy.

    plan(load [layers, E], gpus, redundant, *, gpus_per_node, n_group, rng, **inputs) -> Placement with
    E + redundant slots per layer; only the load's ratios matter.
    load_blind: the layout ignores the load when there are no replicas (the planning window is not routed).
    replicas: False where the strategy places each expert once (redundant_experts must be 0).
    inputs: what else ``plan`` takes from the planning window: ``pairs`` (co-selection counts [layers, E, E])
    or ``window`` (popularity over the last steps [steps, layers, E]); empty: the load alone.
    prepare(load, gpus, gpus_per_node, pairs) -> extra keyword arguments that depend only on the routing
    (shared between runs that differ in redundancy, e.g. ``compare``).
    check(s, n_group): raises ScenarioError (naming the field and the fix) for a scenario it cannot place.
    """

    plan: Callable[..., Placement]
    load_blind: bool = False
    replicas: bool = True
    inputs: str = ""
    prepare: Callable[..., dict[str, Any]] | None = None
    check: Callable[[Scenario, int], None] | None = None


PLACEMENTS: Registry[Strategy] = Registry("placement", "placement.kind")
