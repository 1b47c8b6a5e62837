"""One iteration of a validated scenario: build every micro-batch, make the stage programs, run the engine,
summarise, and check the run's invariants. ``run_scenario`` is the core every higher layer calls (serving
surfaces, plans, studies, the façade)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from moesim import __version__
from moesim.config.schema import Scenario
from moesim.engine import SimRecords, simulate
from moesim.ir.program import Program
from moesim.ir.programs import inference_programs, training_programs
from moesim.ir.training import gradient_sync_stages
from moesim.iteration.build import Built, RouteReuse, build
from moesim.iteration.invariants import check_run
from moesim.iteration.metrics import summarize
from moesim.iteration.mtp import draft_programs, draft_scenario, expected_tokens, verify_scenario
from moesim.iteration.sizing import guard
from moesim.iteration.summary import Summary
from moesim.model.layers import attention_kind_label
from moesim.model.memory import memory_per_gpu
from moesim.util.errors import ScenarioError


@dataclass(frozen=True)
class Result:
    """One simulated iteration: the typed summary, the programs the engine ran and its raw records.
    ``built`` is micro-batch 0's build (placement, topology, layer statistics)."""

    summary: Summary
    records: SimRecords
    built: Built
    programs: tuple[tuple[Program, ...], ...]

    @cached_property
    def doc(self) -> dict[str, Any]:
        """The JSON document of the summary."""
        return self.summary.to_dict()

    def to_records(self, table: str = "layers") -> list[dict[str, Any]]:
        """Flat rows for a data frame (``pandas.DataFrame(result.to_records())``): ``layers`` (one per MoE
        layer pass: stage times in s, bytes, load balance) or ``gpus`` (one per GPU)."""
        if table not in ("layers", "gpus"):
            raise ValueError("table must be 'layers' or 'gpus'")
        return [{k: v for k, v in row.items() if not isinstance(v, list | dict)} for row in self.doc[table]]

    def to_frame(self, table: str = "layers") -> Any:
        """``to_records(table)`` as a pandas DataFrame (pandas optional: a MoesimError says how to get it)."""
        from moesim.util.frames import to_frame
        return to_frame(self.to_records(table))


def build_micro_batches(s: Scenario, trace: list[np.ndarray] | None = None, placement: Any = None,
                        reuse: RouteReuse | None = None) -> list[Built]:
    """One build per micro-batch. With two, each GPU's tokens split in halves that share the statistics and
    the placement and draw their own routing."""
    if s.workload.micro_batches == 1:
        return [build(s, trace, placement, reuse=reuse)]
    half = s.model_copy(update={"workload": s.workload.model_copy(
        update={"tokens_per_gpu": s.workload.tokens_per_gpu // 2,
                "decode_tokens_per_gpu": s.workload.decode_tokens_per_gpu // 2})})
    b0 = build(half, None, placement, reuse=reuse)
    return [b0, build(half, None, b0.placement, micro_batch=1, reuse=reuse)]


def programs_of(s: Scenario, builds: list[Built]) -> list[list[Program]]:
    """Every micro-batch's programs: forward layers, or for training forward + backward + gradient sync."""
    if s.workload.mode == "training":
        b = builds[0]
        return [training_programs(b.pieces, b.resolved, gradient_sync_stages(b.resolved, b.placement))]
    return [inference_programs(b.pieces, b.resolved) for b in builds]


def run_scenario(s: Scenario, trace: list[np.ndarray] | None = None, placement: Any = None,
                 reuse: RouteReuse | None = None) -> Result:
    """Simulate one iteration of a validated scenario.

    trace: optional per-MoE-layer top-k expert ids [GPUs × tokens_per_gpu, k], GPU-major, replayed
    instead of synthetic routing. placement: a plan to use instead of planning one. reuse: routings of
    runs that differed only in placement, shared (``build.RouteReuse``)."""
    if s.workload.pipeline_stages > 1:
        raise ScenarioError("a pipelined scenario runs stage by stage", path="workload.pipeline_stages",
                            fix="run it with moesim.pipeline.run_pipeline (moesim run does), or use 1 stage")
    guard(s)
    main = verify_scenario(s)  # with MTP: the verify pass over every sequence's token and drafts
    builds = build_micro_batches(main, trace, placement, reuse)
    programs = programs_of(main, builds)
    stats = [list(b.stats) for b in builds]
    if s.workload.mtp is not None:  # the draft passes: the MTP module's block, once per draft
        draft = build(draft_scenario(s), reuse=reuse)
        d = s.workload.mtp.draft_tokens
        programs[0] += draft_programs(inference_programs(draft.pieces, draft.resolved)[0], d, len(stats[0]),
                                      s.model.num_hidden_layers)
        stats[0] += [draft.stats[0]] * d
    records = simulate(programs, builds[0].topology, exact=builds[0].fluid_network, engine=s.sim.engine)
    steps = s.workload.accumulation_steps if s.workload.mode == "training" else 1
    per_gpu = s.workload.tokens_per_gpu_f if s.workload.group_tokens else s.workload.tokens_per_gpu
    tokens = s.cluster.num_gpus * per_gpu * steps  # emitted: with MTP, the accepted drafts too
    tokens = tokens * expected_tokens(s) if s.workload.mtp is not None else tokens
    summary = summarize(records, programs, stats, tokens, s.cluster.gpus_per_node, _meta(s, builds[0], records),
                        s.workload.scope, s.workload.context_tokens)
    routing = builds[0].resolved.routing
    check_run(summary, [b.stats for b in builds], s.cluster.num_gpus * main.workload.tokens_per_gpu_f / len(builds),
              routing.top_k, routing.rule)
    return Result(summary, records, builds[0], tuple(tuple(p) for p in programs))


def _meta(s: Scenario, b: Built, rec: SimRecords) -> dict[str, Any]:
    r = b.routing
    return {
        "moesim_version": __version__,
        "scenario": s.name,
        "seed": s.seed,
        "model": b.model.name,
        "gpu": s.cluster.gpu.name,
        "nodes": s.cluster.nodes,
        "gpus_per_node": s.cluster.gpus_per_node,
        "mode": s.workload.mode,
        "tokens_per_gpu": s.workload.tokens_per_gpu,
        "moe_layers": b.model.num_moe_layers,
        "attention_kind": attention_kind_label(s.model),
        "routing": {"top_k": r.top_k, "n_group": r.n_group, "topk_group": r.topk_group,
                    "group_score": r.group_score, "capacity_factor": r.capacity_factor,
                    "stats": s.router.stats.model_dump()},
        "placement": s.placement.kind,
        "comm": {**s.comm.model_dump(), "algorithm_used": b.resolved.algorithm, "sm_share_used": b.resolved.sm_share,
                 "sm_share_source": b.resolved.sm_share_source},
        "fidelity": {"network": ("fluid" if b.fluid_network else "drain") if rec.engine != "bound" else "none",
                     "engine": rec.engine,
                     **({"interleaved_phases": rec.interleaved_phases} if rec.engine == "lockstep" else {}),
                     "routing": ("trace replay" + ("" if b.trace_exact else ", reused cyclically")
                                 if b.trace_exact is not None else
                                 "exact" if b.sampled_tokens_per_gpu == b.scenario.workload.tokens_per_gpu
                                 else "sampled"),
                     "routed_tokens_per_gpu": b.sampled_tokens_per_gpu},
        "cost_sources": dict(sorted(s.cluster.gpu_provenance.items())),
        "memory_per_gpu": memory_per_gpu(s),
        "compute_costs": b.costs_source,
        **({"mtp": {**s.workload.mtp.model_dump(), "verify_tokens_per_gpu": verify_scenario(s).workload.tokens_per_gpu,
                    "expected_tokens_per_step": expected_tokens(s)}} if s.workload.mtp is not None else {}),
    }
