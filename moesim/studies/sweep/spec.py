"""The sweep file: ``base`` (a scenario path relative to the sweep file), optional ``set`` overrides,
``grid`` axes (cartesian product) and ``zip`` axes (lists of equal length, stepped together; the zipped rows
are crossed with the grid). Axis keys are dotted scenario paths, values lists.

    base: ../scenarios/deepseek-v3-prefill-h800.yaml
    set: [model.num_hidden_layers=13]
    grid:
      cluster.nodes: [2, 4, 8]
      placement.kind: [contiguous, eplb]
    zip:
      workload.tokens_per_gpu: [1024, 4096]
      sim.sampled_tokens: [16384, 65536]
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moesim.config.loader import read_yaml
from moesim.util.errors import ScenarioError

KEYS = ("base", "set", "grid", "zip")


@dataclass(frozen=True)
class SweepSpec:
    file: Path
    base: Path
    overrides: tuple[str, ...]
    grid: dict[str, list[Any]]
    zipped: dict[str, list[Any]]

    def points(self) -> list[dict[str, Any]]:
        """Every point's parameters {dotted path: value}, grid product × zipped rows, in a stable order."""
        grid = [dict(zip(self.grid, combo)) for combo in itertools.product(*self.grid.values())] or [{}]
        n = len(next(iter(self.zipped.values()))) if self.zipped else 1
        rows = [{k: v[i] for k, v in self.zipped.items()} for i in range(n)] if self.zipped else [{}]
        return [{**g, **z} for g in grid for z in rows]

    @staticmethod
    def overrides_for(params: dict[str, Any]) -> list[str]:
        """``--set`` style overrides; values as JSON so strings, numbers and mappings round-trip."""
        return [f"{k}={json.dumps(v)}" for k, v in params.items()]


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; bad input is one ScenarioError naming the file, key and fix."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ScenarioError("a sweep must be a mapping", file=str(path), fix=f"use the keys {', '.join(KEYS)}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ScenarioError("unknown key", file=str(path), path=unknown[0], fix=f"allowed keys: {', '.join(KEYS)}")
    if "base" not in raw:
        raise ScenarioError("missing", file=str(path), path="base",
                            fix="give base: the path of a scenario file, relative to the sweep file")
    base = (path.parent / str(raw["base"])).resolve()
    if not base.is_file():
        raise ScenarioError(f"no such scenario {raw['base']!r}", file=str(path), path="base",
                            fix="give the path of a scenario file, relative to the sweep file")
    sets = raw.get("set") or []
    if not isinstance(sets, list) or not all(isinstance(x, str) and "=" in x for x in sets):
        raise ScenarioError("must be a list of PATH=VALUE strings", file=str(path), path="set",
                            fix="e.g. set: [model.num_hidden_layers=13]")
    grid, zipped = _axes(raw.get("grid"), "grid", path), _axes(raw.get("zip"), "zip", path)
    if len({len(v) for v in zipped.values()}) > 1:
        raise ScenarioError(f"zipped lists differ in length ({ {k: len(v) for k, v in zipped.items()} })",
                            file=str(path), path="zip", fix="give every zip axis the same number of values")
    both = sorted(set(grid) & set(zipped))
    if both:
        raise ScenarioError("axis in both grid and zip", file=str(path), path=f"zip.{both[0]}",
                            fix="keep each axis in one of them")
    spec = SweepSpec(path, base, tuple(sets), grid, zipped)
    _check_points(spec)
    return spec


def _check_points(spec: SweepSpec) -> None:
    """Every point's names and values, before any point runs: an axis no scenario has, or a value no scenario
    accepts, is the sweep file's mistake (whether a point fits is the run's to find out)."""
    from moesim.config.loader import apply_overrides
    from moesim.iteration.scenario import scenario_from_dict
    raw = read_yaml(spec.base)
    for params in spec.points():
        try:
            scenario_from_dict(apply_overrides(raw, [*spec.overrides, *spec.overrides_for(params)]),
                               base_dir=spec.base.parent, checks=False)
        except ScenarioError as err:
            at = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ScenarioError(f"{err.problem}" + (f" (at the point {at})" if at else ""), file=str(spec.file),
                                path=err.path, fix=err.fix) from None


def _axes(value: Any, name: str, path: Path) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ScenarioError("must map dotted paths to lists of values", file=str(path), path=name,
                            fix=f"e.g. {name}: {{cluster.nodes: [2, 4]}}")
    for key, vals in value.items():
        if not isinstance(vals, list) or not vals:
            raise ScenarioError("must be a non-empty list", file=str(path), path=f"{name}.{key}",
                                fix=f"e.g. {key}: [a, b]")
    return {str(k): list(v) for k, v in value.items()}
