"""Capacity planning over candidate GPU types and layouts.

PLAN.yaml:

    model: deepseek-v3                   # catalogue name, inline mapping, or {hf_config: path}
    gpus: {h800: {price_per_hour: 2.0}, h200: {price_per_hour: 3.5}}   # catalogue GPUs, USD per GPU-hour
    gpus_per_node: 8
    workload: {mode: prefill, tokens_per_gpu: 4096}
    target: {throughput_tokens_per_s: 400000}          # optional
    limits: {max_gpus: 256, max_iteration_time_s: 2.0, max_token_latency_s: 0.05}   # optional
    vary: {nodes: [4, 8, 16], placement: [contiguous, eplb], redundant_experts: [0, 32], node_limit: [null, 4]}
    scenario: {router: {stats: {kind: power_law, alpha: 1.01}}, comm: {algorithm: hierarchical}}  # optional
    seed: 7

Every combination is a candidate. A candidate that does not validate or does not fit in memory is
infeasible and says why; the rest are simulated (same seed, so the same router draws). Throughput covers
the scenario's ``workload.scope``: the whole model by default when the model gives its attention shape.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moesim.config.loader import read_yaml
from moesim.errors import MoesimError, ScenarioError

KEYS = ("model", "gpus", "gpus_per_node", "workload", "target", "limits", "vary", "scenario", "seed")
VARY = ("nodes", "placement", "redundant_experts", "node_limit")


@dataclass
class Candidate:
    gpu: str
    nodes: int
    placement: str
    redundant_experts: int
    node_limit: int | None
    price_per_hour: float
    gpus: int = 0
    feasible: bool = True
    reason: str = ""
    throughput_tokens_per_s: float = 0.0
    iteration_time_s: float = 0.0
    memory_gib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_per_hour(self) -> float:
        return self.gpus * self.price_per_hour

    @property
    def cost_per_million_tokens(self) -> float | None:
        if not self.throughput_tokens_per_s:
            return None
        return self.cost_per_hour / (self.throughput_tokens_per_s * 3600) * 1e6

    def row(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "nodes": self.nodes, "gpus": self.gpus, "placement": self.placement,
                "redundant_experts": self.redundant_experts, "node_limit": self.node_limit,
                "feasible": self.feasible, "reason": self.reason, "meets_target": self.extra.get("meets", False),
                "memory_checked": self.extra.get("memory_checked", False),
                "throughput_scope": self.extra.get("throughput_scope"),
                "throughput_tokens_per_s": self.throughput_tokens_per_s, "iteration_time_s": self.iteration_time_s,
                "memory_per_gpu_gib": self.memory_gib, "cost_per_hour": self.cost_per_hour,
                "cost_per_million_tokens": self.cost_per_million_tokens}


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read and check a plan file: one ScenarioError naming the file, key and fix on bad input."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ScenarioError("a plan must be a mapping", file=str(path), fix=f"use the keys {', '.join(KEYS)}")
    for key in raw:
        if key not in KEYS:
            raise ScenarioError("unknown key", file=str(path), path=str(key), fix=f"allowed keys: {', '.join(KEYS)}")
    for key in ("model", "gpus"):
        if key not in raw:
            raise ScenarioError("missing", file=str(path), path=key, fix="see `moesim plan --help` for an example")
    if not isinstance(raw["gpus"], dict) or not raw["gpus"]:
        raise ScenarioError("must map GPU names to {price_per_hour: ...}", file=str(path), path="gpus",
                            fix="e.g. gpus: {h800: {price_per_hour: 2.0}}")
    for name, spec in raw["gpus"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("price_per_hour"), int | float):
            raise ScenarioError("needs price_per_hour (USD per GPU-hour)", file=str(path), path=f"gpus.{name}",
                                fix=f"e.g. {name}: {{price_per_hour: 2.0}}")
    vary = raw.get("vary") or {}
    for key, vals in vary.items():
        if key not in VARY or not isinstance(vals, list) or not vals:
            raise ScenarioError("unknown or empty axis", file=str(path), path=f"vary.{key}",
                                fix=f"vary takes lists for {', '.join(VARY)}")
    return {**raw, "file": str(path), "base_dir": str(path.parent)}


def candidates(p: dict[str, Any]) -> list[Candidate]:
    vary = p.get("vary") or {}
    axes = [list(p["gpus"]), vary.get("nodes", [1]), vary.get("placement", ["contiguous"]),
            vary.get("redundant_experts", [0]), vary.get("node_limit", [None])]
    return [Candidate(gpu, nodes, pl, red, nl, float(p["gpus"][gpu]["price_per_hour"]))
            for gpu, nodes, pl, red, nl in itertools.product(*axes)]


def scenario_dict(p: dict[str, Any], c: Candidate) -> dict[str, Any]:
    base = dict(p.get("scenario") or {})
    router = dict(base.get("router") or {})
    if c.node_limit:
        router["limit"] = {"scope": "nodes", "max": c.node_limit}
    return {**base, "name": f"{c.gpu}-{c.nodes}n-{c.placement}-{c.redundant_experts}", "seed": p.get("seed", 0),
            "model": p["model"], "router": router,
            "cluster": {**(base.get("cluster") or {}), "gpu": c.gpu, "nodes": c.nodes,
                        "gpus_per_node": p.get("gpus_per_node", 8)},
            "placement": {**(base.get("placement") or {}), "kind": c.placement,
                          "redundant_experts": c.redundant_experts},
            "workload": {**(base.get("workload") or {}), **(p.get("workload") or {})}}


def _evaluate(task: tuple[dict[str, Any], str, int]) -> dict[str, Any]:
    """Worker: simulate one feasible candidate's scenario."""
    from moesim import api  # noqa: PLC0415
    from moesim.config import scenario_from_dict  # noqa: PLC0415

    raw, base_dir, _index = task
    try:
        sm = api.run_scenario(scenario_from_dict(raw, base_dir=base_dir)).summary
    except MoesimError as exc:
        return {"error": str(exc)}
    return {"throughput": sm.throughput_tokens_per_s, "iteration": sm.iteration_time_s, "scope": sm.scope}


def plan(p: dict[str, Any], executor) -> dict[str, Any]:
    """Evaluate every candidate; return rows, the recommendation, the frontier and runner-ups."""
    from moesim.config import scenario_from_dict  # noqa: PLC0415
    from moesim.memory import memory_per_gpu  # noqa: PLC0415

    limits, target = p.get("limits") or {}, (p.get("target") or {}).get("throughput_tokens_per_s")
    cands, tasks = candidates(p), []
    for i, c in enumerate(cands):
        raw = scenario_dict(p, c)
        try:
            s = scenario_from_dict(raw, base_dir=p["base_dir"])
        except MoesimError as exc:
            c.feasible, c.reason = False, str(exc).split(": ", 1)[-1]
            continue
        c.gpus = s.cluster.num_gpus
        mem = memory_per_gpu(s)
        c.memory_gib = mem.get("total_bytes", 0.0) / 2**30
        c.extra["memory_checked"] = bool(mem.get("known"))
        if limits.get("max_gpus") and c.gpus > limits["max_gpus"]:
            c.feasible, c.reason = False, f"{c.gpus} GPUs exceed limits.max_gpus {limits['max_gpus']}"
        elif mem.get("known") and not mem["fits"]:
            gib = 2**30
            c.feasible = False
            c.reason = (f"needs {mem['total_bytes'] / gib:.1f} GiB per GPU, has {mem['capacity_bytes'] / gib:.1f} "
                        f"(over by {mem['over_by_bytes'] / gib:.1f})")
        else:
            tasks.append((raw, p["base_dir"], i))
    for task, res in executor.run(_evaluate, tasks):
        c = cands[task[2]]
        if "error" in res:
            c.feasible, c.reason = False, res["error"]
            continue
        c.throughput_tokens_per_s, c.iteration_time_s = res["throughput"], res["iteration"]
        c.extra["throughput_scope"] = res["scope"]
        max_it = limits.get("max_iteration_time_s")
        # decode emits one token per sequence per iteration, so the per-token latency is the iteration time
        max_tok = limits.get("max_token_latency_s")
        if max_it and c.iteration_time_s > max_it:
            c.reason = f"iteration {c.iteration_time_s:.3f} s over limits.max_iteration_time_s {max_it}"
        elif max_tok and c.iteration_time_s > max_tok:
            c.reason = f"per-token latency {c.iteration_time_s:.4f} s over limits.max_token_latency_s {max_tok}"
        c.extra["meets"] = (not c.reason) and (target is None or c.throughput_tokens_per_s >= target)
    ok = [c for c in cands if c.feasible and c.throughput_tokens_per_s > 0]
    meeting = sorted([c for c in ok if c.extra.get("meets")],
                     key=lambda c: (c.cost_per_hour, -c.throughput_tokens_per_s))
    best = meeting[0] if meeting else None
    return {"rows": [c.row() for c in cands], "target_throughput_tokens_per_s": target,
            "best": best.row() if best else None,
            "runners_up": [{**c.row(), "cost_over_best": c.cost_per_hour / best.cost_per_hour - 1.0}
                           for c in meeting[1:6]] if best else [],
            "frontier": [c.row() for c in pareto(ok)],
            "throughput_scope": "moe_layers"}


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Candidates no other beats on both cost per hour (lower) and throughput (higher), by cost."""
    out, best_tp = [], -1.0
    for c in sorted(cands, key=lambda c: (c.cost_per_hour, -c.throughput_tokens_per_s)):
        if c.throughput_tokens_per_s > best_tp:
            out.append(c)
            best_tp = c.throughput_tokens_per_s
    return out
