"""A launch: the commands that start an engine as a scenario's deployment, the files they read, and what
the engine cannot be told. ``script`` writes it as one shell script run on every node of the deployment
(``ROLE`` and ``NODE_RANK`` pick the command), ``doc`` as JSON for programs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moesim.launch.facts import Facts
from moesim.launch.flags import shell


@dataclass(frozen=True)
class Command:
    """One engine process per node of an instance. ``nodes``: which nodes of the instance run it (``all``,
    ``head``: node rank 0, ``others``: ranks 1 and up); ``entry``: how many leading words of ``argv`` are
    the entry point (the rest are the engine's arguments, checked against its parser)."""

    role: str
    nodes: str
    argv: tuple[str, ...]
    entry: int
    parser: tuple[str, str] | None = None  # (engine, version) whose flags check it; None: the launcher's

    @property
    def args(self) -> list[str]:
        return list(self.argv[self.entry:])


@dataclass(frozen=True)
class Launch:
    engine: str
    version: str
    facts: Facts
    commands: tuple[Command, ...]
    files: dict[str, str] = field(default_factory=dict)  # name → text, written beside the script
    notes: tuple[str, ...] = ()

    def doc(self) -> dict[str, Any]:
        """The launch as plain data (``launch.json``)."""
        f = self.facts
        return {"engine": self.engine, "version": self.version, "scenario": f.scenario.name, "model": f.model,
                "hf_id": f.hf_id, "deployment": f.kind,
                "roles": [{"role": r.name, "instances": r.instances, "gpus_per_instance": r.gpus,
                           "nodes_per_instance": r.nodes, "first_gpu": r.first_gpu, "attention_tp": r.attention_tp,
                           "ep_size": r.ep_size, "redundant_experts": r.redundant_experts,
                           "max_running_per_instance": r.max_running, "token_budget_per_instance": r.token_budget,
                           "mem_fraction": r.mem_fraction} for r in f.roles],
                "commands": [{"role": c.role, "nodes": c.nodes, "argv": list(c.argv)} for c in self.commands],
                "files": sorted(self.files), "notes": list(self.notes)}

    def script(self) -> str:
        """One bash script for every node: ``ROLE=<role> NODE_RANK=<rank in its instance> HEAD_ADDR=<the
        instance's head node> bash launch.sh``."""
        from moesim import __version__
        f = self.facts
        roles = " ".join(r.name for r in f.roles)
        lines = ["#!/usr/bin/env bash",
                 f"# {self.engine} {self.version} launch of moesim scenario {f.scenario.name!r} (moesim {__version__})",
                 *(f"# {r.name}: {r.instances} instance(s) of {r.gpus} GPU(s) on {r.nodes} node(s) each"
                   for r in f.roles),
                 "# Run on every node of an instance, from this folder:",
                 f"#   ROLE=<{'|'.join(r.name for r in f.roles)}> NODE_RANK=<0 on the instance's head node> "
                 "HEAD_ADDR=<head node's address> bash launch.sh",
                 *(f"# note: {n}" for n in self.notes),
                 "set -euo pipefail",
                 'cd "$(dirname "$0")"',
                 f'ROLE="${{ROLE:?set ROLE to one of: {roles}}}"',
                 'NODE_RANK="${NODE_RANK:-0}"',
                 'HEAD_ADDR="${HEAD_ADDR:-127.0.0.1}"',
                 'MODEL_PATH="${MODEL_PATH:-' + (f.hf_id or "") + '}"',
                 'if [ "$NODE_RANK" = 0 ]; then WHICH=head; else WHICH=others; fi',
                 'case "$ROLE/$WHICH" in']
        for c in self.commands:
            pattern = {"all": f"{c.role}/head|{c.role}/others", "head": f"{c.role}/head",
                       "others": f"{c.role}/others"}[c.nodes]
            lines += [f"  {pattern})", f"    exec {shell(list(c.argv))} ;;"]
        lines += ['  *) echo "launch.sh: no command for ROLE=$ROLE (roles: ' + roles + ')" >&2; exit 2 ;;', "esac", ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class Launcher:
    """An engine version's renderer: ``render(facts)`` → Launch, or for a ``local`` engine ``render(scenario)``
    → LocalLaunch (ScenarioError where the engine cannot run the deployment as simulated)."""

    engine: str  # the fixture's engine name (flags/ENGINE-VERSION.json)
    version: str
    render: Callable[[Any], Any]  # Facts → Launch; for a local engine, Scenario → LocalLaunch
    local: bool = False  # one machine running an offload scenario (llama.cpp, KTransformers)
