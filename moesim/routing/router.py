"""Token-choice top-k routing with DeepSeek-style group limits, on synthetic per-token scores.

Synthetic scores: each token's affinity to expert e is ``u = log p[e] + Gumbel(0, 1)``. Taking the top-k of
``u`` draws k distinct experts without replacement with probabilities ∝ p (the Gumbel-top-k trick; Kool et
al., ICML 2019, "Stochastic Beams and Where to Find Them", §3), so the expert load follows the chosen law,
while every per-token rule (group limits, capacity) still acts on real score vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.routing.params import RoutingParams
from moesim.routing.rules import RULES, Rule
from moesim.routing.topdown import sample_topk

TINY = np.float32(1e-30)
CHUNK_TOKENS = 8192  # bounds memory: CHUNK_TOKENS × experts float32 scores at a time


@dataclass(frozen=True)
class Routed:
    """One layer's routing. ids, keep [N, K]: expert of each assignment and whether it is live (False for
    padding, and later for capacity drops); score [N, K]: its router score (softmax prob or sigmoid)."""

    ids: np.ndarray
    keep: np.ndarray
    score: np.ndarray | None = None


def route_layer(popularity: np.ndarray, n_tokens: int, params: RoutingParams,
                rng: np.random.Generator) -> np.ndarray:
    """Token-choice top-k ids [n_tokens, top_k] int32 for synthetic scores (no bias, no placement limit).

    Group-limited rules use the top-down sampler (same law, O(n_group + k) draws per token instead of
    O(E)); others score every expert, which numpy's partition makes as fast at these sizes.
    """
    if params.group_limited:
        return sample_topk(popularity, n_tokens, params, rng)
    return route_dense(popularity, n_tokens, params, rng)


def route(popularity: np.ndarray, n_tokens: int, params: RoutingParams, rng: np.random.Generator,
          home: np.ndarray | None = None) -> Routed:
    """Route ``n_tokens`` tokens by the rule ``params.rule`` names (``RULES``). home [E]: the device or node of
    each expert, for placement-limited routing (``params.limit_scope``)."""
    return RULES.get(params.rule).route(popularity, n_tokens, params, rng, home)


def _token_choice(popularity: np.ndarray, n_tokens: int, params: RoutingParams, rng: np.random.Generator,
                  home: np.ndarray | None = None) -> Routed:
    """Top-k per token on synthetic scores, with group, node and device limits."""
    if not params.needs_dense:
        ids = route_layer(popularity, n_tokens, params, rng)
        return Routed(ids, np.ones(ids.shape, dtype=bool))
    ids = np.empty((n_tokens, params.top_k), dtype=np.int32)
    score = np.empty((n_tokens, params.top_k), dtype=np.float32)
    groups = _group_index(home) if params.limit_scope else None
    p32 = popularity.astype(np.float32)
    for start in range(0, n_tokens, CHUNK_TOKENS):
        n = min(CHUNK_TOKENS, n_tokens - start)
        r = p32 / np.maximum(rng.standard_exponential((n, params.experts), dtype=np.float32), TINY)
        s = scores(r, params.scoring_func)
        chosen = select_topk(r, params, groups=groups, s=s)
        ids[start:start + n] = chosen
        score[start:start + n] = np.take_along_axis(s, chosen.astype(np.int64), axis=1)
    return Routed(ids, np.ones(ids.shape, dtype=bool), score)


def route_clusters(pops: np.ndarray, n: int, params: RoutingParams, rng: np.random.Generator,
                   home: np.ndarray | None = None) -> Routed:
    """Co-activation: each token draws a cluster (equally likely) and is routed with that cluster's
    popularity pops [C, E]; experts a cluster favours are then chosen together."""
    cluster = rng.integers(pops.shape[0], size=n)
    parts = [(np.flatnonzero(cluster == c), route(pops[c], int((cluster == c).sum()), params, rng, home=home))
             for c in range(pops.shape[0])]
    width = max(p[1].ids.shape[1] for p in parts)
    ids, keep = np.zeros((n, width), dtype=np.int64), np.zeros((n, width), dtype=bool)
    score = np.zeros((n, width), dtype=np.float32)
    for idx, rt in parts:
        w = rt.ids.shape[1]
        ids[idx, :w], keep[idx, :w] = rt.ids, rt.keep
        if rt.score is not None:
            score[idx, :w] = rt.score
    return Routed(ids, keep, score)


def route_dense(popularity: np.ndarray, n_tokens: int, params: RoutingParams,
                rng: np.random.Generator) -> np.ndarray:
    """``route_layer`` by scoring every expert: ``r = p / Exp(1)``, then ``select_topk``."""
    out = np.empty((n_tokens, params.top_k), dtype=np.int32)
    p32 = popularity.astype(np.float32)
    for start in range(0, n_tokens, CHUNK_TOKENS):
        n = min(CHUNK_TOKENS, n_tokens - start)
        # r = exp(u) = p / Exp(1): the log is monotone, so it is never taken for selection
        x = rng.standard_exponential((n, params.experts), dtype=np.float32)
        r = p32 / np.maximum(x, TINY)  # an exact 0 draw would give inf
        out[start:start + n] = select_topk(r, params)
    return out


def scores(r: np.ndarray, scoring_func: str) -> np.ndarray:
    """Router scores from affinities r = exp(u) [N, E]: sigmoid(u) = r / (1 + r), or softmax(u) = r / Σ r."""
    if scoring_func == "sigmoid":
        return r / (1.0 + r)
    return r / r.sum(axis=1, keepdims=True)


def select_topk(r: np.ndarray, params: RoutingParams, groups: np.ndarray | None = None,
                s: np.ndarray | None = None) -> np.ndarray:
    """Top-k selection [N, top_k] from affinities r [N, E] under the routing rule, each row in descending
    selection-score order (as ``torch.topk`` returns them; replica choice by position depends on it).

    Selection uses the router scores plus ``params.bias`` (DeepSeek-V3: the bias steers selection and
    group scores, not the weights). Group limit (DeepSeek-V2 §2.1.2 device-limited; DeepSeek-V3 §2.1.2
    node-limited): experts split into groups, each scored by its max ("max") or the sum of its top-2
    ("sum_top2"); only the best groups stay eligible. ``groups`` [n_groups, S] (padded with -1) gives
    placement-derived groups (``params.limit_scope``); otherwise ``n_group`` groups of consecutive ids.
    """
    bias = params.bias_array
    if bias is None and groups is None and not params.group_limited:
        return _topk(r, params.top_k)
    sel = (scores(r, params.scoring_func) if s is None else s) if bias is not None else r
    if bias is not None:
        sel = sel + bias
    if groups is not None:
        return _group_limited(sel, params.top_k, groups, params.limit_max, params.limit_score,
                              None if bias is not None else params.scoring_func)
    if params.group_limited:
        size = params.experts // params.n_group
        idx = np.arange(params.experts).reshape(params.n_group, size)
        # without a bias, group scores of sum_top2 come from router scores (r itself is only monotone)
        return _group_limited(sel, params.top_k, idx, params.topk_group, params.group_score,
                              None if bias is not None else params.scoring_func)
    return _topk(sel, params.top_k)


def _group_limited(sel: np.ndarray, k: int, groups: np.ndarray, keep: int, score: str,
                   scoring_func: str | None) -> np.ndarray:
    """Keep the ``keep`` best groups [N, keep], then top-k of sel inside them. groups [G, S], -1 = pad."""
    n = sel.shape[0]
    pad = groups < 0
    vals = np.where(pad, -np.inf, sel[:, np.maximum(groups, 0)])  # [N, G, S]
    if score == "max" or groups.shape[1] < 2:
        gscore = vals.max(axis=2)
    else:
        top2 = np.partition(vals, groups.shape[1] - 2, axis=2)[:, :, -2:]
        if scoring_func is not None:
            top2 = np.where(np.isfinite(top2), _scores(top2, scoring_func), 0.0)
        gscore = np.where(np.isfinite(top2), top2, 0.0).sum(axis=2)
    if keep >= groups.shape[0]:
        return _topk(sel, k)
    kept = _topk(gscore, keep)  # [N, keep]
    members = groups[kept].reshape(n, -1)  # [N, keep·S]
    allowed = np.zeros(sel.shape, dtype=bool)
    rows = np.broadcast_to(np.arange(n)[:, None], members.shape)
    ok = members >= 0
    allowed[rows[ok], members[ok]] = True
    return _topk(np.where(allowed, sel, -np.inf), k).astype(np.int32)


def _group_index(home: np.ndarray) -> np.ndarray:
    """[n_groups, max size] expert ids per group id in ``home`` [E], padded with -1."""
    order = np.argsort(home, kind="stable")
    counts = np.bincount(home)
    out = np.full((counts.size, max(int(counts.max()), 1)), -1, dtype=np.int64)
    pos = np.arange(home.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out[home[order], pos] = order
    return out


def _expert_choice(popularity: np.ndarray, n: int, params: RoutingParams, rng: np.random.Generator,
                   home: np.ndarray | None = None) -> Routed:
    """Each expert takes the C tokens with its highest softmax score, C = n·k·capacity_factor/E (at least 1);
    a token may get any number of experts, including none. ids padded to the most experts any token got."""
    e = params.experts
    c = max(1, min(n, int(n * params.top_k * (params.capacity_factor or 1.0) / e)))
    r = popularity.astype(np.float32) / np.maximum(rng.standard_exponential((n, e), dtype=np.float32), TINY)
    s = r / r.sum(axis=1, keepdims=True)
    tok = np.argpartition(-s, c - 1, axis=0)[:c]  # [C, E] token ids
    token = tok.ravel()
    expert = np.tile(np.arange(e), c)
    order = np.lexsort((expert, token))
    token, expert = token[order], expert[order]
    per = np.bincount(token, minlength=n)
    width = max(int(per.max()), 1)
    col = np.arange(token.size) - np.repeat(np.cumsum(per) - per, per)
    ids = np.zeros((n, width), dtype=np.int32)
    keep = np.zeros((n, width), dtype=bool)
    ids[token, col] = expert
    keep[token, col] = True
    score = np.zeros((n, width), dtype=np.float32)
    score[token, col] = s[token, expert]
    return Routed(ids, keep, score)


def _hash(popularity: np.ndarray, n: int, params: RoutingParams, rng: np.random.Generator,
          home: np.ndarray | None = None) -> Routed:
    """Token ids ~ Zipf(hash_zipf) over the vocabulary; each id maps to k fixed distinct random experts."""
    v = params.hash_vocab
    freq = np.arange(1, v + 1, dtype=float) ** -params.hash_zipf
    tid = rng.choice(v, size=n, p=freq / freq.sum())
    uniq, inv = np.unique(tid, return_inverse=True)
    table = np.argpartition(rng.random((uniq.size, params.experts), dtype=np.float32), params.top_k - 1,
                            axis=1)[:, :params.top_k]
    ids = table[inv].astype(np.int32)  # a fixed, arbitrary order per vocabulary id (no scores to sort by)
    return Routed(ids, np.ones(ids.shape, dtype=bool))


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    """Column ids of the k largest entries per row, largest first (ties: lower id first), as
    ``torch.topk(sorted=True)`` orders them. x: [N, C] -> [N, k] int64.

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
    ids = np.nonzero(mask)[1].reshape(n, k)
    order = np.argsort(-np.take_along_axis(x, ids, axis=1), axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1)


def _scores(r: np.ndarray, scoring_func: str) -> np.ndarray:
    """Router scores from affinities r = exp(u): sigmoid(u) = r / (1 + r); softmax(u) ∝ r, whose per-token
    normaliser cancels when one token's groups are compared."""
    if scoring_func == "sigmoid":
        return r / (1.0 + r)
    return r


def apply_capacity(topk_ids: np.ndarray, experts: int, capacity: float) -> np.ndarray:
    """Keep mask [N, k]: per expert, assignments beyond ``capacity`` in token order are dropped
    (Megatron-Core's "position" drop policy; capacity = tokens·k·capacity_factor/experts, GShard §2.2)."""
    return capacity_keep(topk_ids, np.ones(topk_ids.shape, dtype=bool), experts, capacity)


def capacity_keep(bins: np.ndarray, live: np.ndarray, n_bins: int, capacity: float, policy: str = "position",
                  score: np.ndarray | None = None) -> np.ndarray:
    """Keep mask [N, K]: per bin (an expert, or a device for per-device capacity), at most ``capacity``
    live assignments survive: the earliest tokens (``position``) or the highest scores (``probs``;
    Megatron-Core's drop policies)."""
    flat_live = live.ravel()
    idx = np.flatnonzero(flat_live)
    b = bins.ravel()[idx].astype(np.int64)
    if policy == "probs" and score is not None:
        order = np.lexsort((-score.ravel()[idx], b))  # by bin, then highest score first
    else:
        order = np.argsort(b, kind="stable")  # stable: token order within each bin
    sorted_b = b[order]
    first = np.searchsorted(sorted_b, np.arange(n_bins))
    rank = np.arange(order.size) - first[sorted_b]
    keep = np.zeros(bins.size, dtype=bool)
    keep[idx[order]] = rank < np.floor(capacity)
    return keep.reshape(bins.shape)


RULES.register("token_choice", Rule(_token_choice, group_limits=True),
               help="top-k experts per token, with DeepSeek's group and node limits")
RULES.register("expert_choice", Rule(_expert_choice, exact_k=False, own_capacity=True),
               help="each expert takes its top-C tokens by score (Zhou et al. 2022); a token may get any number")
RULES.register("hash", Rule(_hash), help="each token id maps to k fixed random experts (hash layers, Roller et al.)")
