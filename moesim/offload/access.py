"""Step by step, layer by layer: which experts each GPU needs, which of them its cache holds, what it
prefetches, fetches or hands to the CPU. Pure; the cache policies are in ``cache.py``.

Per (step, layer) and GPU (as the owner of its experts): the experts its tokens and the other GPUs' tokens
chose, in expert order. Prefetch (``offload.prefetch``) happens first, during the layer's attention: up to
``prefetch_experts`` experts not in the cache, the most popular ones of the layer (``stats``) or the ones
the layer's tokens will choose, most tokens first (``oracle``). A prefetched expert is kept by lru / lfu
caches and staged (dropped after use) by a static one. Then every needed expert is a hit, a prefetch hit,
or a miss served by ``offload.miss``; a fetched miss is kept by lru / lfu.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.config.schema import Scenario
from moesim.offload.cache import ExpertCache
from moesim.offload.tiers import MissCosts, TierPlan, initial_set


@dataclass
class LayerAccess:
    """One (step, layer) on every GPU. Counts [G] of expert uses; token lists per GPU: one entry per expert
    it runs on the GPU (``gpu_tokens``: hits; ``prefetched_tokens``; ``fetched_tokens``: demand fetches) or has
    the CPU run (``cpu_tokens``). pairs [G, G]: token copies from each token's GPU to each expert's GPU."""

    gpus: int
    hits: np.ndarray = field(init=False)
    prefetch_hits: np.ndarray = field(init=False)
    fetched: np.ndarray = field(init=False)
    cpu: np.ndarray = field(init=False)
    prefetched: np.ndarray = field(init=False)
    gpu_tokens: list[list[int]] = field(init=False)
    prefetched_tokens: list[list[int]] = field(init=False)
    fetched_tokens: list[list[int]] = field(init=False)
    cpu_tokens: list[list[int]] = field(init=False)
    pairs: np.ndarray | None = None

    def __post_init__(self) -> None:
        g = self.gpus
        for name in ("hits", "prefetch_hits", "fetched", "cpu", "prefetched"):
            setattr(self, name, np.zeros(g, dtype=np.int64))
        self.gpu_tokens, self.prefetched_tokens, self.fetched_tokens, self.cpu_tokens = (
            [[] for _ in range(g)] for _ in range(4))


def walk(s: Scenario, plan: TierPlan, popularity: np.ndarray, ids: np.ndarray, costs: MissCosts
         ) -> list[list[LayerAccess]]:
    """[steps][layers] accesses. ids [steps, layers, seqs, k] (sequences GPU-major); popularity [layers, E]."""
    g = s.cluster.gpus_per_node
    per_gpu = ids.shape[2] // g
    caches = [_caches(s, plan, popularity, gpu) for gpu in range(g)]
    hot = [[[int(e) for e in np.argsort(-popularity[layer], kind="stable") if plan.owner[e] == gpu]
            for layer in range(popularity.shape[0])] for gpu in range(g)]
    src_gpu = np.repeat(np.arange(g), per_gpu)
    out = []
    for t in range(ids.shape[0]):
        row = []
        for layer in range(ids.shape[1]):
            la = LayerAccess(g)
            chosen = ids[t, layer]  # [seqs, k]
            owners = plan.owner[chosen]
            if g > 1:
                la.pairs = np.bincount((src_gpu[:, None] * g + owners).ravel(), minlength=g * g).reshape(g, g)
            counts = np.bincount(chosen.ravel(), minlength=plan.owner.size)
            for gpu in range(g):
                need = [(int(e), int(counts[e])) for e in np.flatnonzero((counts > 0) & (plan.owner == gpu))]
                _serve(s, caches[gpu][layer], layer, need, hot[gpu][layer], la, gpu, costs)
            row.append(la)
        out.append(row)
    return out


def cache_scope(s: Scenario) -> str:
    """``offload.cache_scope`` with auto resolved: model for a static cache, layer for lru / lfu."""
    o = s.offload
    return o.cache_scope if o.cache_scope != "auto" else ("model" if o.cache == "static" else "layer")


def _caches(s: Scenario, plan: TierPlan, popularity: np.ndarray, gpu: int) -> list[ExpertCache]:
    """The cache each MoE layer of ``gpu`` uses: one shared pool, or one per layer with an equal share of
    the slots (the remainder to the first layers)."""
    layers = popularity.shape[0]
    initial = initial_set(s, popularity, plan.owner, gpu, plan.slots)

    def prior(key: tuple[int, int]) -> float:
        return float(popularity[key])

    if cache_scope(s) == "model":
        return [ExpertCache(plan.slots, s.offload.cache, initial, prior)] * layers
    share, extra = divmod(plan.slots, layers)
    return [ExpertCache(share + (layer < extra), s.offload.cache, [k for k in initial if k[0] == layer], prior)
            for layer in range(layers)]


def _prefetch(s: Scenario, cache: ExpertCache, layer: int, need: list[tuple[int, int]], hot: list[int]) -> set[int]:
    o = s.offload
    if o.prefetch == "none":
        return set()
    cands = hot if o.prefetch == "stats" else [e for e, _ in sorted(need, key=lambda x: (-x[1], x[0]))]
    picked = [e for e in cands if (layer, e) not in cache][:o.prefetch_experts]
    for e in picked:
        cache.insert((layer, e))
    return set(picked)


def _serve(s: Scenario, cache: ExpertCache, layer: int, need: list[tuple[int, int]], hot: list[int],
           la: LayerAccess, gpu: int, costs: MissCosts) -> None:
    """One layer's batch on one GPU: prefetch, then hits judged against the cache as the batch found it,
    then the misses; the fetched ones compete for the slots with what the cache holds (lru / lfu)."""
    staged = _prefetch(s, cache, layer, need, hot)
    la.prefetched[gpu] = len(staged)
    hits = cache.use_batch([(layer, e) for e, _ in need])
    missed = []
    for (e, n), hit in zip(need, hits):
        if e in staged:
            la.prefetch_hits[gpu] += 1
            la.prefetched_tokens[gpu].append(n)
        elif hit:
            la.hits[gpu] += 1
            la.gpu_tokens[gpu].append(n)
        else:
            missed.append((e, n))
    fetch = _fetched(s.offload.miss, missed, costs)
    for e, n in missed:
        if e in fetch:
            la.fetched[gpu] += 1
            la.fetched_tokens[gpu].append(n)
        else:
            la.cpu[gpu] += 1
            la.cpu_tokens[gpu].append(n)
    # lru / lfu keep what was fetched (static keeps nothing); an expert run on the CPU never reached the GPU
    cache.insert_batch([(layer, e) for e, _ in missed if e in fetch])


def _fetched(miss: str, missed: list[tuple[int, int]], costs: MissCosts) -> set[int]:
    """The misses whose weights are fetched (the rest run on the CPU): all, none, or ``cheaper``'s split
    (the most-token misses first, as ``MissCosts.split`` chooses)."""
    if miss != "cheaper":
        return {e for e, _ in missed} if miss == "fetch" else set()
    order = sorted(missed, key=lambda x: (-x[1], x[0]))
    k = costs.split([n for _, n in order])
    return {e for e, _ in order[:k]}
