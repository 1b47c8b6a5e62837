"""Records of an offload run → its summary document. Pure.

Time per decode step is split on the GPU that finishes last, stage by stage: ``attention`` (the non-MoE
blocks), ``gpu_experts`` (router, permute, routed, fetched and shared experts, unpermute: time the SMs
ran), ``communication`` (dispatch, combine between GPUs, once every partner is ready), ``waiting`` (for
the other GPUs to reach dispatch or combine: their fetches or experts took longer), ``fetch_stall`` (a
prefetch still in flight when attention ended, and waiting for fetched weights), ``cpu_experts``
(waiting for the CPU's experts) and ``host_overhead`` (the engine's eager kernel launches and per-pass host
work, ``runtime``).
The parts add up to the step time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moesim.engine.records import END, ENTER, START, SimRecords
from moesim.offload.access import LayerAccess
from moesim.offload.programs import ATTENTION, GPU_EXPERTS
from moesim.offload.tiers import TierPlan

PARTS = ("attention", "gpu_experts", "communication", "waiting", "fetch_stall", "cpu_experts", "host_overhead")


def breakdown(rec: SimRecords) -> dict[str, float]:
    """Seconds per part over the whole run, on the GPU that ends last."""
    t = rec.times[0]  # [P, G, S, 3]
    gpu = int(np.nanargmax(np.nanmax(t[..., END], axis=(0, 2))))
    out = dict.fromkeys(PARTS, 0.0)
    prev = 0.0
    for p, names in enumerate(rec.names):
        x = t[p, gpu]
        end = float(np.nanmax(x[:, END]))
        part = _program_parts(names, x, end - prev)
        for k, v in part.items():
            out[k] += v
        prev = end
    return out


def _program_parts(names: tuple[str, ...], x: np.ndarray, total: float) -> dict[str, float]:
    def span(n: str, a: int = START) -> float:
        return float(x[names.index(n), END] - x[names.index(n), a]) if n in names else 0.0

    def end(n: str) -> float:
        return float(x[names.index(n), END]) if n in names else -np.inf

    part = {"attention": sum(span(n) for n in ATTENTION), "gpu_experts": sum(span(n) for n in GPU_EXPERTS),
            "communication": span("dispatch") + span("combine"),
            "waiting": sum(float(x[names.index(n), START] - x[names.index(n), ENTER])
                           for n in ("dispatch", "combine") if n in names),
            "fetch_stall": max(0.0, end("prefetch") - max(end("routed_experts"), end("permute"), end("dispatch")))
            if "prefetch" in names else 0.0,
            "cpu_experts": 0.0, "host_overhead": span("kernel_launch") + span("host_overhead")}
    rest = max(0.0, total - sum(part.values()))
    cpu_end = max(end("cpu_experts"), end("from_cpu"))
    part["cpu_experts" if cpu_end > -np.inf and cpu_end >= end("fetched_experts") else "fetch_stall"] += rest
    return part


def cache_doc(acc: list[list[LayerAccess]], plan: TierPlan, policy: str, scope: str) -> dict[str, Any]:
    """Hit rates overall and per MoE layer; uses of experts per step by where they ran."""
    def total(name: str, layer: int | None = None) -> int:
        rows = [row[layer] for row in acc] if layer is not None else [la for row in acc for la in row]
        return int(sum(getattr(la, name).sum() for la in rows))

    layers = len(acc[0])
    uses = sum(total(n) for n in ("hits", "prefetch_hits", "fetched", "cpu"))

    def rate(layer: int | None = None) -> float:
        u = sum(total(n, layer) for n in ("hits", "prefetch_hits", "fetched", "cpu"))
        return (total("hits", layer) + total("prefetch_hits", layer)) / u if u else 1.0

    steps = len(acc)
    return {"policy": policy, "scope": scope, "slots_per_gpu": plan.slots, "hit_rate": rate(),
            "resident_hit_rate": total("hits") / uses if uses else 1.0,
            "prefetch_hit_rate": total("prefetch_hits") / uses if uses else 0.0,
            "prefetch_used": total("prefetch_hits") / total("prefetched") if total("prefetched") else None,
            "per_layer_hit_rate": [rate(layer) for layer in range(layers)],
            "expert_uses_per_step": {"gpu_cached": total("hits") / steps,
                                     "gpu_prefetched": total("prefetch_hits") / steps,
                                     "gpu_fetched": total("fetched") / steps, "cpu": total("cpu") / steps}}


def bytes_doc(acc: list[list[LayerAccess]], plan: TierPlan, act_bytes_per_token: float, tokens: int
              ) -> dict[str, float]:
    """Bytes over the host links per generated (or prefilled) token, by kind."""
    las = [la for row in acc for la in row]
    fetch = sum(int(la.fetched.sum()) for la in las) * plan.expert_bytes
    pre = sum(int(la.prefetched.sum()) for la in las) * plan.expert_bytes
    act = 2 * act_bytes_per_token * sum(sum(sum(x) for x in la.cpu_tokens) for la in las)
    return {"fetch": fetch / tokens, "prefetch": pre / tokens, "cpu_activations": act / tokens,
            "total": (fetch + pre + act) / tokens}
