"""A local launch: one machine, one engine process, for a scenario whose experts live across memory tiers
(``offload``): llama.cpp (moesim.launch.llamacpp) and KTransformers (moesim.launch.ktransformers). The
same interface as a serving ``Launch`` (``commands``, ``files``, ``notes``, ``doc()``, ``script()``), plus
the placement it asks the engine for, in moesim's terms, so the user can simulate exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moesim.config.schema import Scenario
from moesim.launch.base import Command
from moesim.launch.facts import hf_id
from moesim.launch.flags import shell
from moesim.model.moe import MoEModel
from moesim.util.errors import ScenarioError


@dataclass(frozen=True)
class LocalLaunch:
    engine: str
    version: str
    scenario: Scenario
    commands: tuple[Command, ...]
    placement: dict[str, Any]  # what the engine is told: GPU / CPU experts, and the moesim override that says it
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # (variable, what it names) the script needs, e.g. the GGUF path

    def doc(self) -> dict[str, Any]:
        s = self.scenario
        return {"engine": self.engine, "version": self.version, "scenario": s.name, "model": s.model.name,
                "hf_id": hf_id(s), "deployment": "offload",
                "roles": [{"role": "local", "instances": 1, "gpus_per_instance": s.cluster.gpus_per_node,
                           "nodes_per_instance": 1}],
                "placement": self.placement,
                "commands": [{"role": c.role, "nodes": c.nodes, "argv": list(c.argv)} for c in self.commands],
                "files": sorted(self.files), "notes": list(self.notes)}

    def script(self) -> str:
        from moesim import __version__
        lines = ["#!/usr/bin/env bash",
                 f"# {self.engine} {self.version} launch of moesim scenario {self.scenario.name!r} (moesim "
                 f"{__version__}): one machine",
                 f"# placement: {self.placement['summary']}",
                 *([f"# simulate exactly this: moesim run SCENARIO {self.placement['moesim_set']}"]
                   if self.placement.get("moesim_set") else []),
                 *(f"# note: {n}" for n in self.notes),
                 "set -euo pipefail",
                 'cd "$(dirname "$0")"',
                 *(f'{name}="${{{name}:?set {name} to {what}}}"' for name, what in self.env),
                 *(f"exec {shell(list(c.argv))}" for c in self.commands), ""]
        return "\n".join(lines)


def offload_of(s: Scenario, engine: str) -> Any:
    """The scenario's offload section; a scenario without one is refused naming the fix."""
    if s.offload is None:
        raise ScenarioError(f"{engine} runs a model whose experts do not all fit in GPU memory: the scenario has "
                            "no offload section", path="offload",
                            fix="give an offload scenario, e.g. scenarios/mixtral-8x7b-offload-4090.yaml")
    return s.offload


def whole_layers_within_budget(s: Scenario) -> int:
    """How many whole MoE layers' experts (a GPU's share of each) fit in the expert memory moesim's plan
    gives the scenario: what a layer-granular engine can keep on the GPU for the same bytes."""
    from moesim.offload.tiers import plan_tiers
    moe = MoEModel.from_spec(s.model)
    per_layer = -(-moe.experts // s.cluster.gpus_per_node)
    return min(moe.num_moe_layers, plan_tiers(s).slots // per_layer)
