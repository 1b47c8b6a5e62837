"""Checks of the mixed-batch composition (``surface.mixed_time``) against the iteration DES run directly on
mixed batches (``workload.mode: mixed``), so every serving run with a mixing policy reports how far the
composed iteration times are from direct simulation at points of its own grids.
"""

from __future__ import annotations

import math
from typing import Any

from moesim.config.schema import Scenario
from moesim.serve.surface import Surface, mixed_time, point_scenario


def probe_points(prefill: Surface, decode: Surface, budget: int) -> list[tuple[int, int, int, int]]:
    """(tokens per GPU, prompt context, decode tokens per GPU, decode context) at two mixed batches inside
    the grids: a full budget with the largest decode batch that leaves half of it to prompts, and a quarter
    budget with a small decode batch; contexts at the grids' geometric middles."""
    mid = lambda g: g[len(g) // 2]  # noqa: E731
    cp, cd = mid(prefill.contexts), mid(decode.contexts)
    out = []
    for total, share in ((budget, 0.5), (max(2, budget // 4), 0.125)):
        d = max(1, min(max(decode.tokens), int(total * share)))
        if d < total:
            out.append((total, cp, d, cd))
    return out


def mixed_scenario(s: Scenario, tokens: int, context: int, decode: int, decode_context: int) -> Scenario:
    """The instance scenario of one mixed iteration (one micro-batch: two-batch overlap splits evenly)."""
    base = point_scenario(s, "prefill", tokens, context)
    w = base.workload
    mb = w.micro_batches if decode % 2 == 0 and w.tokens_per_gpu % 2 == 0 else 1
    return base.model_copy(update={"workload": w.model_copy(update={
        "mode": "mixed", "decode_tokens_per_gpu": decode, "decode_context_tokens": max(1, int(decode_context)),
        "micro_batches": mb})})


def run_probe(task: tuple[Scenario, tuple[int, int, int, int]]) -> float:
    """Worker: one mixed iteration DES → seconds."""
    from moesim.iteration.run import run_scenario
    s, (t, c, d, dc) = task
    return run_scenario(mixed_scenario(s, t, c, d, dc)).summary.iteration_time_s


def check_mixed(roles: list[tuple[str, Scenario, int]], surfaces: dict[tuple[str, str], Surface],
                executor: Any) -> dict[str, dict[str, Any]]:
    """Per role that prefills and decodes (name, instance scenario, token budget per GPU): the composed and
    the direct iteration seconds at ``probe_points`` and their largest relative error."""
    tasks, out = [], {}
    for name, sc, budget in roles:
        if sc.offload is not None:  # memory tiers: no mixed iteration in the offload simulator
            continue
        pre, dec = surfaces[(name, "prefill")], surfaces[(name, "decode")]
        tasks += [(name, (sc, pt), mixed_time(pre, dec, pt[0], pt[1], pt[2], pt[3]))
                  for pt in probe_points(pre, dec, budget)]
    results = {item[0]: res for item, res in executor.run(_probe_task, [(i, t[1]) for i, t in enumerate(tasks)])}
    for i, (name, (_, pt), composed) in enumerate(tasks):
        direct = results[i]
        row = {"tokens_per_gpu": pt[0], "context": pt[1], "decode_tokens_per_gpu": pt[2], "decode_context": pt[3],
               "direct_s": direct, "composed_s": composed}
        doc = out.setdefault(name, {"points": [], "max_error": 0.0})
        doc["points"].append(row)
        doc["max_error"] = max(doc["max_error"], abs(composed - direct) / direct if direct else math.inf)
    return out


def _probe_task(item: tuple[int, tuple[Scenario, tuple[int, int, int, int]]]) -> float:
    return run_probe(item[1])
