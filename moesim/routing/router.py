"""Token-choice top-k routing with DeepSeek-style group limits, on synthetic per-token scores.

Synthetic scores: each token's affinity to expert e is ``u = log p[e] + Gumbel(0, 1)``. Taking the top-k of
``u`` draws k distinct experts without replacement with probabilities ∝ p (the Gumbel-top-k trick; Kool et
al., ICML 2019, "Stochastic Beams and Where to Find Them", §3), so the expert load follows the chosen law,
while every per-token rule (group limits, capacity) still acts on real score vectors.
"""

from __future__ import annotations

import numpy as np

from moesim.routing.params import RoutingParams
from moesim.routing.topdown import sample_topk

TINY = np.float32(1e-30)
CHUNK_TOKENS = 8192  # bounds memory: CHUNK_TOKENS × experts float32 scores at a time


def route_layer(popularity: np.ndarray, n_tokens: int, params: RoutingParams,
                rng: np.random.Generator) -> np.ndarray:
    """Route ``n_tokens`` tokens through one MoE layer.

    popularity: [E] expert probabilities. Returns topk_ids [n_tokens, top_k] int32, distinct experts per row.
    Group-limited rules use the top-down sampler (same law, O(n_group + k) draws per token instead of
    O(E)); others score every expert, which numpy's partition makes as fast at these sizes.
    """
    if params.group_limited:
        return sample_topk(popularity, n_tokens, params, rng)
    return route_dense(popularity, n_tokens, params, rng)


def route_dense(popularity: np.ndarray, n_tokens: int, params: RoutingParams,
                rng: np.random.Generator) -> np.ndarray:
    """``route_layer`` by scoring every expert of every token: ``r = p / Exp(1)``, then ``select_topk``."""
    out = np.empty((n_tokens, params.top_k), dtype=np.int32)
    p32 = popularity.astype(np.float32)
    for start in range(0, n_tokens, CHUNK_TOKENS):
        n = min(CHUNK_TOKENS, n_tokens - start)
        # r = exp(u) = p / Exp(1): the log is monotone, so it is never taken for selection
        x = rng.standard_exponential((n, params.experts), dtype=np.float32)
        r = p32 / np.maximum(x, TINY)  # an exact 0 draw would give inf
        out[start:start + n] = select_topk(r, params)
    return out


def select_topk(r: np.ndarray, params: RoutingParams) -> np.ndarray:
    """Top-k selection under the group limit. r: [N, E] positive affinities ``exp(u)``. Returns [N, top_k].

    Group limit (DeepSeek-V2 §2.1.2 device-limited; DeepSeek-V3 §2.1.2 node-limited): experts split into
    ``n_group`` groups of consecutive ids, each scored by its max ("max") or the sum of its top-2 router
    scores ("sum_top2"); only the ``topk_group`` best groups stay eligible.
    """
    if not params.group_limited:
        return _topk(r, params.top_k)
    n, e = r.shape
    size = e // params.n_group
    grouped = r.reshape(n, params.n_group, size)
    if params.group_score == "max":
        gscore = grouped.max(axis=2)  # router scores are monotone in u, so the best group is the same
    else:
        gscore = _scores(np.partition(grouped, size - 2, axis=2)[:, :, -2:], params.scoring_func).sum(axis=2)
    keep = np.sort(_topk(gscore, params.topk_group), axis=1)  # [N, topk_group] group ids
    rows = np.arange(n)[:, None]
    sub = grouped[rows, keep].reshape(n, -1)  # [N, topk_group * size]
    col = _topk(sub, params.top_k)
    return (keep[rows, col // size] * size + col % size).astype(np.int32)


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    """Column ids of the k largest entries per row, ascending id order. x: [N, C] -> [N, k] int64.

    A partition finds each row's k-th largest value; a mask then picks the columns. Rows where ties make
    the mask pick more or fewer than k fall back to argpartition.
    """
    n, c = x.shape
    if k == c:
        return np.broadcast_to(np.arange(c), (n, c)).copy()
    kth = np.partition(x, c - k, axis=1)[:, c - k: c - k + 1]
    mask = x >= kth
    bad = mask.sum(axis=1) != k
    if bad.any():
        fix = np.argpartition(-x[bad], k - 1, axis=1)[:, :k]
        mask[bad] = False
        mask[np.flatnonzero(bad)[:, None], fix] = True
    return np.nonzero(mask)[1].reshape(n, k)


def _scores(r: np.ndarray, scoring_func: str) -> np.ndarray:
    """Router scores from affinities r = exp(u): sigmoid(u) = r / (1 + r); softmax(u) ∝ r, whose per-token
    normaliser cancels when one token's groups are compared."""
    if scoring_func == "sigmoid":
        return r / (1.0 + r)
    return r


def apply_capacity(topk_ids: np.ndarray, experts: int, capacity: float) -> np.ndarray:
    """Keep mask [N, k]: per expert, assignments beyond ``capacity`` in token order are dropped
    (Megatron-Core's "position" drop policy; capacity = tokens·k·capacity_factor/experts, GShard §2.2)."""
    flat = topk_ids.ravel()
    order = np.argsort(flat, kind="stable")  # stable: token order within each expert
    sorted_e = flat[order]
    first = np.searchsorted(sorted_e, np.arange(experts))
    rank = np.arange(flat.size) - first[sorted_e]
    keep = np.empty(flat.size, dtype=bool)
    keep[order] = rank < np.floor(capacity)
    return keep.reshape(topk_ids.shape)
