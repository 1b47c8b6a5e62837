"""Sharing work between runs that differ only where it does not matter: routings of runs that differ in
placement (``compare``, ``rebalance``, the planner's variants), and whole MoE layers of runs that differ
only in context length (a serving surface's points along one token row). Held by the caller, never global;
the results are the same with or without it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from moesim.config.schema import Scenario

if TYPE_CHECKING:
    from moesim.placement import Placement


class RouteReuse:
    """Work shared between runs, keyed by everything it depends on: each layer's routed tokens and the
    planning-window counts (runs that differ only in where experts live), and the plan and each layer's
    MoE part (runs that differ only in context, ``moe_key``). Held by the caller and passed in, never
    global; same results with or without it. ``layers``: share plans and whole MoE layers too (only worth
    the memory where runs differ in context alone: a surface's token row)."""

    def __init__(self, layers: bool = False) -> None:
        self.entries: dict[tuple, Any] = {}
        self.hits = 0
        self.layers = layers

    def get(self, key: tuple, make):
        """The entry for ``key``, made by ``make()`` the first time."""
        hit = self.entries.get(key)
        if hit is None:
            hit = self.entries[key] = make()
        else:
            self.hits += 1
        return hit


def routing_key(s: Scenario) -> str:
    """What a layer's routing depends on: the scenario without its placement, communication, serving and
    engine settings (the window's size and use are added by the planning load)."""
    return s.model_dump_json(exclude={"name": True, "placement": True, "comm": True, "serving": True,
                                      "sim": {"threads", "engine", "network", "auto_fluid_max_gpus",
                                              "size_guard"}})


def moe_key(s: Scenario) -> str:
    """What a MoE layer's routing, placement and traffic depend on: the whole scenario but its name, its
    serving fields and the context length, which only the attention pieces read. Runs that differ only in
    context (a surface's points along one token row) share their MoE layers through ``RouteReuse``."""
    wl = s.workload.model_copy(update={"context_tokens": 1})
    return s.model_copy(update={"workload": wl}).model_dump_json(exclude={"name": True, "serving": True})


def shared_key(s: Scenario, placement: Placement, micro_batch: int) -> tuple:
    """The key a layer's MoE part is shared under (``_Context.layer``): what it depends on and the plan."""
    plan = hashlib.sha256(np.ascontiguousarray(placement.phy2log).tobytes()).hexdigest()
    return ("moe", moe_key(s), plan, placement.phy2log.shape, micro_batch)


