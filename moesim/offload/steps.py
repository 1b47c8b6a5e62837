"""Which experts every token chooses, decode step after decode step (offload runs).

Decode: each GPU holds ``tokens_per_gpu`` sequences; step t routes their t-th generated token through
every MoE layer. Prefill: one step of ``tokens_per_gpu`` prompt tokens per GPU.
- Synthetic statistics: each layer routes with the scenario's rule (its own random stream per layer);
  with ``locality`` q > 0, each expert a sequence's previous token chose in that layer is chosen again with
  probability q and the token's other choices come from its fresh draw, in the fresh draw's order
  (duplicates skipped), so every token still has top_k distinct experts.
- A token trace replays consecutive tokens: sequence j of the run reads the trace's tokens
  ``j·steps .. j·steps + steps − 1`` in order (its real temporal locality); a trace shorter than
  sequences × steps is reused cyclically (then not exact).
Group limits apply; placement-limited rules and capacity do not (one machine: no node limit to model).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.config.schema import Scenario, TraceStats
from moesim.routing import RoutingParams, route
from moesim.routing.sources import load_trace

STEP_SPAWN = (3, 1)  # the offload steps' own seed stream (far from build's and the planning window's)


def step_ids(s: Scenario, params: RoutingParams, popularity: np.ndarray, steps: int, seqs: int
             ) -> tuple[np.ndarray, bool]:
    """ids [steps, layers, seqs, top_k] (int64) for ``seqs`` sequences (all GPUs, GPU-major), and
    whether they are exact (a trace long enough, or synthetic)."""
    if isinstance(s.router.stats, TraceStats):
        return _trace_ids(s, popularity.shape, steps, seqs)
    p = replace(params, limit_scope=None, capacity_factor=None)
    layers = popularity.shape[0]
    q = getattr(s.router.stats, "locality", 0.0)
    seeds = np.random.SeedSequence(s.seed, spawn_key=STEP_SPAWN).spawn(layers)
    out = np.empty((steps, layers, seqs, p.top_k), dtype=np.int64)
    for layer in range(layers):
        rng = np.random.default_rng(seeds[layer])
        for t in range(steps):
            fresh = np.asarray(route(popularity[layer], seqs, p, rng).ids, dtype=np.int64)
            out[t, layer] = fresh if t == 0 or q == 0 else reuse(out[t - 1, layer], fresh, rng.random(fresh.shape) < q)
    return out, True


def reuse(prev: np.ndarray, fresh: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """[n, k] each row: the kept experts of ``prev`` (``keep`` [n, k] bool), then ``fresh``'s experts not
    already kept, in order, up to k."""
    out = np.empty_like(fresh)
    k = fresh.shape[1]
    for i in range(fresh.shape[0]):
        row = [int(e) for e in prev[i][keep[i]]]
        for e in fresh[i]:
            if len(row) == k:
                break
            if int(e) not in row:
                row.append(int(e))
        out[i] = row
    return out


def _trace_ids(s: Scenario, shape: tuple[int, int], steps: int, seqs: int) -> tuple[np.ndarray, bool]:
    layers, experts = shape
    ids, _ = load_trace(s.router.stats.path, layers, experts)
    n = ids[0].shape[0]
    idx = (np.arange(seqs)[None, :] * steps + np.arange(steps)[:, None]) % n  # [steps, seqs]
    out = np.stack([np.asarray(layer, dtype=np.int64)[idx] for layer in ids], axis=1)  # [steps, layers, seqs, k]
    return out, seqs * steps <= n
