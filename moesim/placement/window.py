"""What a placement planner sees: the expert load it balances, and the extra inputs some planners need.

Real EPLB never sees the law routing samples from. It balances counts recorded over a past window
(SGLang's expert-distribution recorder, vLLM's ``expert_load_window``, DeepSeek's ``weight`` matrix). So by
default (``placement.plan_on: sampled``) the planner gets the counts of ``placement.window_tokens`` tokens
per layer, routed with the scenario's own rule on a random stream of their own: the window is independent
of the tokens the run then routes. ``plan_on: oracle`` hands it the exact popularity (the "perfect EPLB"
upper bound). Measured statistics (histograms, traces) are already recorded counts and are used as they are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from moesim.config.schema import HistogramStats, Scenario, TraceStats
from moesim.placement.registry import PLACEMENTS
from moesim.placement.strategies import pair_counts
from moesim.routing import RoutingParams, expert_popularity, route
from moesim.routing.router import route_clusters
from moesim.routing.sources import load_histogram_steps, load_trace

WINDOW_SPAWN_KEY = (2, 1000)  # the window's own seed stream: (placement stream, far from its children)


def planning_load(s: Scenario, params: RoutingParams, popularity: np.ndarray,
                  mixtures: list[np.ndarray] | None, rng_of, pool=None) -> np.ndarray:
    """Expert load [layers, E] the planner balances: counts of (token, expert) assignments over the window,
    or the popularity itself (oracle, or measured statistics). ``rng_of`` turns a SeedSequence into a
    generator; ``pool`` (an executor) routes layers in parallel."""
    if isinstance(s.router.stats, (HistogramStats, TraceStats)):
        return popularity
    if s.placement.plan_on == "oracle":
        # with co-activation, tokens draw a cluster uniformly: the law's marginal is the clusters' mean
        return popularity if mixtures is None else np.stack([m.mean(axis=0) for m in mixtures])
    layers, e = popularity.shape
    # the window is routed without the placement (placement-limited rules need one: plain group limits)
    p = replace(params, limit_scope=None, capacity_factor=None)
    seeds = np.random.SeedSequence(s.seed, spawn_key=WINDOW_SPAWN_KEY).spawn(layers)
    n = s.placement.window_tokens

    def counts(layer: int) -> np.ndarray:
        rng = rng_of(seeds[layer])
        r = route(popularity[layer], n, p, rng) if mixtures is None else route_clusters(mixtures[layer], n, p, rng)
        return np.bincount(np.asarray(r.ids)[r.keep].ravel(), minlength=e).astype(float)

    rows = list(pool.map(counts, range(layers))) if pool is not None else [counts(i) for i in range(layers)]
    return np.stack(rows)


def planning_inputs(s: Scenario, params: RoutingParams, popularity: np.ndarray,
                    stats_ss: np.random.SeedSequence, place_ss: np.random.SeedSequence,
                    mixtures: list[np.ndarray] | None, rng_of) -> dict[str, Any]:
    """What the affinity and time-aware planners need: co-selection counts from a routing sample (the
    trace itself when one is replayed), or the popularity over the last ``window`` steps."""
    inputs, layers, e = PLACEMENTS.get(s.placement.kind).inputs, popularity.shape[0], popularity.shape[1]
    if inputs == "pairs":
        n = min(s.placement.plan_tokens, s.cluster.num_gpus * s.workload.tokens_per_gpu)
        if isinstance(s.router.stats, TraceStats):
            ids, _ = load_trace(s.router.stats.path, layers, e)
            samples = [layer[:n] for layer in ids]
        else:
            rng = rng_of(place_ss.spawn(1)[0])
            samples = [route(popularity[layer], n, params, rng).ids if mixtures is None
                       else route_clusters(mixtures[layer], n, params, rng).ids for layer in range(layers)]
        return {"pairs": np.stack([pair_counts(np.asarray(x, dtype=np.int64), e) for x in samples])}
    if inputs == "window":
        stats = s.router.stats
        if getattr(stats, "drift", 0) and hasattr(stats, "step"):
            first = max(0, stats.step - s.placement.window + 1)
            window = [expert_popularity(stats.model_copy(update={"step": t}), layers, e, rng_of(stats_ss),
                                        s.cluster.num_gpus * s.workload.tokens_per_gpu, params.top_k)
                      for t in range(first, stats.step + 1)]
            return {"window": np.stack(window)}
        if isinstance(stats, HistogramStats):
            return {"window": np.stack(load_histogram_steps(stats.path, stats.key, layers, e))}
    return {}
