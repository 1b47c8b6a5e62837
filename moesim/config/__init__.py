"""Scenario configuration: the schema (frozen, unknown keys rejected), the catalogue, and YAML loading with
precise error paths. Cross-field checks live above, in ``moesim.iteration.scenario``."""

from moesim.config.loader import apply_overrides, parse_scenario, read_scenario
from moesim.config.schema import Scenario

__all__ = ["Scenario", "apply_overrides", "parse_scenario", "read_scenario"]
