"""What every run must satisfy, checked cheaply at its end (``api.run_scenario``): a violation is a bug in
moesim, reported as an internal error, never a silently wrong result.

- every figure of the summary is finite, and no time, size or count is negative;
- token copies are conserved: the copies the GPUs compute equal the copies the experts receive, and with
  token-choice routing computed + dropped = tokens × top-k;
- bytes per layer add up to the totals; each layer's stages and waiting add up to its time, and the
  layers' times to their timeline's end;
- throughput = tokens / iteration time.
"""

from __future__ import annotations

import math
from typing import Any

from moesim.routing.rules import RULES

REL = 1e-6


class InvariantError(AssertionError):
    """A run broke one of moesim's own invariants (a bug, not a user mistake)."""


def _close(a: float, b: float, what: str) -> None:
    if not math.isclose(a, b, rel_tol=REL, abs_tol=1e-9 * max(abs(a), abs(b), 1.0) + 1e-12):
        raise InvariantError(f"{what}: {a!r} != {b!r}")


def _finite(doc: Any, where: str = "summary", slack: float = 0.0) -> None:
    """Every number in ``doc`` finite and not below ``-slack`` (rounding of differences of times)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            _finite(v, f"{where}.{k}", slack)
    elif isinstance(doc, list | tuple):
        for i, v in enumerate(doc):
            _finite(v, f"{where}[{i}]", slack)
    elif isinstance(doc, float | int) and not isinstance(doc, bool):
        if not math.isfinite(doc):
            raise InvariantError(f"{where} is {doc}")
        if doc < -slack:
            raise InvariantError(f"{where} is negative ({doc})")


def check_run(summary: Any, stats: list[list[Any]], tokens_per_layer: float, top_k: int, rule: str) -> None:
    """Raise InvariantError when a run breaks an invariant (see the module docstring). ``stats``: per
    micro-batch, per MoE layer ``LayerStats``; ``tokens_per_layer``: tokens routed per layer per micro-batch."""
    _finite({"iteration_time_s": summary.iteration_time_s, "totals": summary.totals.to_dict(),
             "layers": [{k: v for k, v in r.__dict__.items() if k not in ("layer", "block", "step", "micro_batch",
                                                                     "critical_gpu")} for r in summary.layers]})
    # per GPU too (its waiting went to -1.86e283 s at oversubscription 1e300); a GPU's waiting is a
    # difference of times, so rounding may leave it a hair below zero
    _finite([g.to_dict(summary.stage_names) for g in summary.gpu_rows], "summary.gpus",
            1e-9 * max(summary.iteration_time_s, 1e-12))
    for m, layers in enumerate(stats):
        for i, st in enumerate(layers):
            where = f"micro-batch {m} layer {i}"
            _close(float(st.gpu_tokens.sum()), float(st.copies), f"{where}: copies on GPUs vs computed")
            _close(float(st.expert_tokens.sum()), float(st.copies), f"{where}: copies on experts vs computed")
            if RULES.get(rule).exact_k:  # every token got top_k experts: computed + dropped = tokens x k
                _close(float(st.copies + st.dropped), tokens_per_layer * top_k, f"{where}: computed + dropped")
    t = summary.totals
    _close(sum(r.inter_node_bytes for r in summary.layers), t.inter_node_bytes, "inter-node bytes vs layers")
    _close(sum(r.intra_node_bytes for r in summary.layers), t.intra_node_bytes, "intra-node bytes vs layers")
    for r in summary.layers:
        _close(sum(r.stages.values()) + r.waiting_s, r.time_s, f"layer {r.layer}: stages + waiting vs its time")
    for tl in summary.micro_batches:
        rows = [r for r in summary.layers if r.micro_batch == tl.micro_batch]
        if rows:
            _close(sum(r.time_s for r in rows), tl.end_s, f"micro-batch {tl.micro_batch}: layer times vs end")
    if summary.iteration_time_s > 0:
        _close(summary.throughput_tokens_per_s * summary.iteration_time_s, summary.tokens_per_iteration,
               "throughput x time vs tokens")
