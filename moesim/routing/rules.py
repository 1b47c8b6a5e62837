"""The routing-rule registry: every rule ``router.rule`` may name, and what the rest of the run may assume of
it. A new rule is one function (popularity [E], tokens, params, rng, home) -> ``Routed`` and one
``RULES.register`` (see ``router.py`` for the built-in ones)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moesim.util.registry import Registry


@dataclass(frozen=True)
class Rule:
    """route(popularity [E], n_tokens, params, rng, home [E] | None) -> Routed.
    group_limits: the rule honours group and node limits (``router.topk_group``, ``router.limit``).
    exact_k: every token gets exactly top_k experts (before capacity drops); the run checks it.
    own_capacity: the rule bounds each expert's tokens itself (no separate capacity pass)."""

    route: Callable[..., Any]
    group_limits: bool = False
    exact_k: bool = True
    own_capacity: bool = False


RULES: Registry[Rule] = Registry("routing rule", "router.rule")
