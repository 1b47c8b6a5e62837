"""Scenarios as every command loads them: read and validated against the schema (``moesim.config``), then
checked across fields against the model, the statistics file and the registries (``checks``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moesim.config.loader import parse_scenario, read_scenario
from moesim.config.schema import Scenario
from moesim.iteration.checks import check_scenario, check_stats_file
from moesim.util.errors import ScenarioError


def scenario_from_dict(raw: Any, base_dir: str | Path = ".", checks: bool = True) -> Scenario:
    """Resolve names and files in ``raw``, validate it and (``checks``) check cross-field consistency."""
    s = parse_scenario(raw, base_dir)
    if checks:
        check(s)
    return s


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Read, override, resolve, validate and check the scenario file at ``path``."""
    s = read_scenario(path, overrides)
    try:
        check(s)
    except ScenarioError as err:
        raise err.located(file=str(path)) from None
    return s


def check(s: Scenario) -> None:
    """Every cross-field check of a schema-valid scenario; a ScenarioError names the field and the fix."""
    check_scenario(s)
    check_stats_file(s)
