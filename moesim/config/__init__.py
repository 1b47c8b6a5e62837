"""Scenario configuration: schema (frozen, unknown keys rejected) and YAML loading with precise error paths."""

from moesim.config.loader import apply_overrides, load_scenario, scenario_from_dict
from moesim.config.schema import Scenario

__all__ = ["Scenario", "apply_overrides", "load_scenario", "scenario_from_dict"]
