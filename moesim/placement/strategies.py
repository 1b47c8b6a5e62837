"""Placement strategies beyond contiguous. Each maps expected loads ``load[layers, E]`` (only ratios matter)
to a :class:`Placement` with ``R = E + redundant`` slots per layer, ``R / gpus`` slots per GPU.

EPLB (DeepSeek's expert-parallel load balancer) is written from its published description (docs/sources.md):
replicate the expert with the largest load per replica until the slots are used, then pack replicas onto
GPUs heaviest first, each onto the lightest GPU that still has a free slot; the hierarchical policy first
packs whole expert groups onto nodes the same way and replicates and packs inside each node. It reproduces
the reference's outputs exactly (tests/fixtures/eplb-golden): float32 loads, a stable descending sort, slot
order (originals first, then replicas in the order they were added), and the one-item-per-bin shortcut.
"""

from __future__ import annotations

import heapq

import numpy as np

from moesim.placement import affinity_jit
from moesim.placement.base import Placement
from moesim.placement.introsort import descending_order


def _hottest_extra(load_row: np.ndarray, redundant: int) -> np.ndarray:
    """Extra replicas for the expected-hottest experts, round-robin from the hottest."""
    hottest = np.argsort(-load_row, kind="stable")
    return hottest[np.arange(redundant) % load_row.size]


def round_robin(load: np.ndarray, gpus: int, redundant: int = 0, **_: object) -> Placement:
    """Expert e on GPU e mod G (strided); extra replicas of the hottest experts dealt out the same way."""
    rows = []
    for row in load:
        logical = np.concatenate([np.arange(row.size), _hottest_extra(row, redundant)])
        spg = logical.size // gpus
        # slot (gpu, j) takes item j·G + gpu: consecutive items land on consecutive GPUs
        rows.append(logical.reshape(spg, gpus).T.ravel())
    return Placement(np.stack(rows), gpus)


def random_placement(load: np.ndarray, gpus: int, redundant: int = 0, rng: np.random.Generator | None = None,
                     **_: object) -> Placement:
    """A random permutation of all slots (logical experts plus extra replicas of the hottest)."""
    rng = rng or np.random.default_rng(0)
    rows = [rng.permutation(np.concatenate([np.arange(row.size), _hottest_extra(row, redundant)])) for row in load]
    return Placement(np.stack(rows), gpus)


def balanced_packing(weights: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each item [n]: heaviest first onto the lightest bin with room; n / bins items per bin."""
    return _pack(weights, bins, reference=False)[0]


def _pack(weights: np.ndarray, bins: int, reference: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(bin of each item [n], its position in the bin [n]): heaviest first onto the lightest,
    lowest-numbered bin with room, n / bins items per bin. Bin loads add up in the items' dtype (float32 for
    EPLB). ``reference``: as DeepSeek's EPLB does it, equal weights in PyTorch's sort order and, with one
    item per bin, item i in bin i; else a stable sort and the greedy order throughout."""
    n = weights.size
    per = n // bins
    if per == 1 and reference:
        return np.arange(n), np.zeros(n, dtype=int)
    out = np.empty(n, dtype=int)
    rank = np.empty(n, dtype=int)
    # a heap of (load, bin, count) over the bins with room: O(n log bins)
    heap = [(weights.dtype.type(0), b, 0) for b in range(bins)]
    order = descending_order(weights) if reference else np.argsort(-weights, kind="stable")
    for i in order.tolist():
        load, b, count = heapq.heappop(heap)
        out[i], rank[i] = b, count
        if count + 1 < per:
            heapq.heappush(heap, (load + weights[i], b, count + 1))
    return out, rank


def replicate(weights: np.ndarray, slots: int) -> np.ndarray:
    """Replicas per expert [n]: one each, then one more at a time to the largest weight / replicas."""
    return _replicate(np.asarray(weights, dtype=float), slots)[2]


def _replicate(w: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EPLB's replication of experts with loads ``w`` [n] into ``slots``: slot i < n holds expert i, each
    later slot the expert with the largest ``w / replicas`` (in w's dtype; ties to the lowest id).
    Returns (expert of each slot [slots], its replica rank [slots], replicas per expert [n])."""
    n = w.size
    cnt = np.ones(n, dtype=int)
    phy = np.concatenate([np.arange(n), np.zeros(slots - n, dtype=int)])
    rank = np.zeros(slots, dtype=int)
    heap = [(-x, e) for e, x in enumerate(w.tolist())]  # float32 values are exact as Python floats
    heapq.heapify(heap)
    as_w = w.dtype.type
    for i in range(n, slots):
        _, e = heapq.heappop(heap)
        phy[i], rank[i] = e, cnt[e]
        cnt[e] += 1
        heapq.heappush(heap, (-float(w[e] / as_w(cnt[e])), e))
    return phy, rank, cnt


def _pack_replicas(experts: np.ndarray, weights: np.ndarray, slots: int, gpus: int) -> np.ndarray:
    """Replicate ``experts`` (ids, with ``weights``) into ``slots`` and pack them onto ``gpus`` GPUs
    (affinity's step inside a node). Returns the logical expert of each slot, GPU-major [slots]."""
    cnt = replicate(weights, slots)
    items = np.repeat(experts, cnt)
    item_w = np.repeat(weights / cnt, cnt)
    gpu = balanced_packing(item_w, gpus)
    order = np.lexsort((-item_w, gpu))  # GPU-major; inside a GPU heaviest first
    return items[order]


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    return inv


def _eplb_layer(w: np.ndarray, slots: int, groups: int, nodes: int, gpus: int) -> tuple[np.ndarray, np.ndarray]:
    """One layer of DeepSeek's hierarchical EPLB, float32 loads ``w`` [E]: pack expert groups onto nodes,
    replicate inside each node, pack each node's slots onto its GPUs. Returns (phy2log [slots], replica
    rank of each slot [slots]). The global policy is this with one group and one node."""
    experts = w.size
    size, per_node = experts // groups, experts // nodes
    node, rank = _pack(w.reshape(groups, size).sum(axis=1, dtype=np.float32), nodes)
    # node-major ("mlog") order: the groups of node 0 in packing order, then node 1, ...
    log2mlog = (((node * (groups // nodes) + rank) * size)[:, None] + np.arange(size)).ravel()
    mlog2log = _inverse(log2mlog)
    phy2log, phyrank = [], []
    for n in range(nodes):
        tokens = w[mlog2log[n * per_node:(n + 1) * per_node]]
        phy, prank, cnt = _replicate(tokens, slots // nodes)
        gpu, pos = _pack((tokens / cnt.astype(np.float32))[phy], gpus // nodes)
        pphy2phy = _inverse(gpu * (slots // gpus) + pos)
        phy2log.append(mlog2log[phy[pphy2phy] + n * per_node])
        phyrank.append(prank[pphy2phy])
    return np.concatenate(phy2log), np.concatenate(phyrank)


def eplb(load: np.ndarray, gpus: int, redundant: int = 0, gpus_per_node: int = 8, n_group: int = 1,
         policy: str = "auto", **_: object) -> Placement:
    """DeepSeek EPLB (github.com/deepseek-ai/EPLB), bit-identical to its reference on float32 loads:
    ``hierarchical`` keeps expert groups and their replicas on one node; ``global`` is the hierarchical
    policy with one group and one node. ``auto`` picks hierarchical when groups divide evenly over the nodes,
    as the reference does."""
    nodes = max(1, gpus // gpus_per_node)
    hier = policy == "hierarchical" or (policy == "auto" and n_group % nodes == 0)
    groups, nodes = (n_group, nodes) if hier else (1, 1)
    w32 = np.asarray(load, dtype=np.float32)
    slots = w32.shape[1] + redundant
    rows = [_eplb_layer(row, slots, groups, nodes, gpus) for row in w32]
    return Placement(np.stack([r[0] for r in rows]), gpus, phyrank=np.stack([r[1] for r in rows]))


def greedy(load: np.ndarray, gpus: int, redundant: int = 0, **_: object) -> Placement:
    """Balanced without replicas (LPT): heaviest expert first onto the lightest GPU with a free slot."""
    if redundant:
        raise ValueError("greedy places each expert once: use redundant_experts 0, or eplb for replicas")
    rows = []
    for row in load:
        gpu = balanced_packing(row, gpus)
        rows.append(np.lexsort((-row, gpu)))
    return Placement(np.stack(rows), gpus)


def optimal(load: np.ndarray, gpus: int, redundant: int = 0, time_limit_s: float = 20.0, **_: object) -> Placement:
    """Exact minimum of the busiest GPU's expected load without replicas (mixed-integer program solved by
    HiGHS through scipy.optimize.milp); a lower bound to measure heuristics against. Small cases only."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # solver only when asked
    if redundant:
        raise ValueError("optimal places each expert once: use redundant_experts 0")
    rows = []
    for row in load:
        e, g = row.size, gpus
        nx = e * g  # x[e, g] binary, then T
        c = np.zeros(nx + 1)
        c[-1] = 1.0
        a_one = np.zeros((e, nx + 1))
        for i in range(e):
            a_one[i, i * g:(i + 1) * g] = 1  # each expert on exactly one GPU
        a_slots = np.zeros((g, nx + 1))
        a_load = np.zeros((g, nx + 1))
        for j in range(g):
            a_slots[j, j:nx:g] = 1  # E / G experts per GPU
            a_load[j, j:nx:g] = row
            a_load[j, -1] = -1  # load_j - T <= 0
        cons = [LinearConstraint(a_one, 1, 1), LinearConstraint(a_slots, e // g, e // g),
                LinearConstraint(a_load, -np.inf, 0)]
        integrality = np.r_[np.ones(nx), 0]
        res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(0, np.r_[np.ones(nx), np.inf]),
                   options={"time_limit": time_limit_s})
        if res.x is None:
            raise ValueError(f"the solver found no placement ({res.message})")
        gpu = np.argmax(res.x[:nx].reshape(e, g), axis=1)
        rows.append(np.lexsort((-row, gpu)))
    return Placement(np.stack(rows), gpus)


def pair_counts(ids: np.ndarray, experts: int) -> np.ndarray:
    """Co-selection matrix [E, E]: how many tokens chose both experts (symmetric, zero diagonal)."""
    w = np.zeros((experts, experts))
    k = ids.shape[1]
    for a in range(k):
        for b in range(a + 1, k):
            np.add.at(w, (ids[:, a], ids[:, b]), 1.0)
    w = w + w.T
    np.fill_diagonal(w, 0.0)
    return w


def _affinity_nodes(row: np.ndarray, pairs: np.ndarray, nodes: int, tol: float, max_swaps: int) -> np.ndarray:
    """Node of each expert: balanced packing, then pairwise swaps between nodes that raise the co-selection
    weight kept inside nodes while every node's load stays under max((1 + tol)·mean, the start's max)."""
    node = balanced_packing(row, nodes)
    member = np.eye(nodes)[node]  # [E, nodes]
    aff = pairs @ member  # [E, nodes]: co-selection weight from e to each node
    load = np.bincount(node, weights=row, minlength=nodes)
    cap = max((1 + tol) * load.mean(), load.max())
    if affinity_jit.available:  # the same swaps, compiled
        affinity_jit.swaps(row.astype(float), pairs.astype(float), node, aff, load, float(cap), max_swaps)
        return node
    for _ in range(max_swaps):
        own = aff[np.arange(row.size), node]
        # gain of swapping a (node X) and b (node Y): a's pull to Y and b's pull to X, minus their own ties
        # and the a-b edge, which stays cut: [a, b] = (aff[a, Y] - own[a]) + (aff[b, X] - own[b]) - 2·pairs[a, b]
        pull = aff[:, node] - own[:, None]  # [a, b]: aff[a, node of b] - own[a]
        gain = pull + pull.T - 2 * pairs
        gain[node[:, None] == node[None, :]] = -np.inf
        dx = row[None, :] - row[:, None]  # node X gains b, loses a
        ok = (load[node][:, None] + dx <= cap) & (load[node][None, :] - dx <= cap)
        gain[~ok] = -np.inf
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        if not gain[a, b] > 1e-9:
            break
        x, y = node[a], node[b]
        load[x] += row[b] - row[a]
        load[y] += row[a] - row[b]
        aff[:, x] += pairs[:, b] - pairs[:, a]
        aff[:, y] += pairs[:, a] - pairs[:, b]
        node[a], node[b] = y, x
    return node


def affinity_nodes(load: np.ndarray, gpus: int, gpus_per_node: int = 8, pairs: np.ndarray | None = None,
                   tol: float = 0.05) -> np.ndarray:
    """The affinity planner's node of every expert [layers, E] (it does not depend on the redundancy, so
    variants that differ only there share it: ``build.RouteReuse``)."""
    nodes = max(1, gpus // gpus_per_node)
    experts = load.shape[1]
    rows = []
    for layer, row in enumerate(load):
        w = pairs[layer] if pairs is not None else np.zeros((experts, experts))
        rows.append(_affinity_nodes(row, w, nodes, tol, max_swaps=4 * experts) if nodes > 1
                    else np.zeros(experts, int))
    return np.stack(rows)


def affinity(load: np.ndarray, gpus: int, redundant: int = 0, gpus_per_node: int = 8,
             pairs: np.ndarray | None = None, tol: float = 0.05, node_rows: np.ndarray | None = None,
             **_: object) -> Placement:
    """Co-selected experts on one node, subject to balance: node assignment by balanced packing refined with
    load-capped swaps that keep heavy co-selection edges inside nodes (the hierarchical all-to-all sends one
    copy per token and node); then, inside each node, replicas of its hottest experts and LPT onto its GPUs.
    pairs [layers, E, E]: co-selection counts from a routing sample (see ``pair_counts``); node_rows: the
    node assignment (``affinity_nodes``) when a variant made it already."""
    nodes = max(1, gpus // gpus_per_node)
    experts = load.shape[1]
    if redundant % nodes:
        raise ValueError(f"affinity places replicas inside nodes: redundant_experts must be a multiple of {nodes}")
    if node_rows is None:
        node_rows = affinity_nodes(load, gpus, gpus_per_node, pairs, tol)
    rows = []
    for row, node in zip(load, node_rows):
        parts = []
        for n in range(nodes):
            ids = np.flatnonzero(node == n)
            parts.append(_pack_replicas(ids, row[ids], (experts + redundant) // nodes, gpus // nodes))
        rows.append(np.concatenate(parts))
    return Placement(np.stack(rows), gpus)


def time_aware(load: np.ndarray, gpus: int, redundant: int = 0, window: np.ndarray | None = None,
               **_: object) -> Placement:
    """Plan for a window of steps: minimise the sum over steps of the busiest GPU's load, not the busiest
    GPU under the average load. window [steps, layers, E] (defaults to ``load`` as one step). Replicas as in
    EPLB (largest mean load per replica); items are placed heaviest first on the GPU with a free slot that
    raises Σ_t max_g load_t,g the least."""
    steps = window if window is not None else load[None]
    experts = load.shape[1]
    slots = experts + redundant
    per = slots // gpus
    rows = []
    for layer in range(load.shape[0]):
        w = steps[:, layer, :]  # [T, E]
        cnt = replicate(w.mean(axis=0), slots)
        items = np.repeat(np.arange(experts), cnt)
        item_w = np.repeat(w / cnt, cnt, axis=1)  # [T, slots]
        gpu_load = np.zeros((w.shape[0], gpus))
        count = np.zeros(gpus, dtype=int)
        gpu_of = np.empty(items.size, dtype=int)
        for i in np.argsort(-item_w.sum(axis=0), kind="stable"):
            trial = gpu_load + item_w[:, i:i + 1]  # [T, G]: put item i on each GPU
            cost = np.maximum(trial, gpu_load.max(axis=1, keepdims=True)).sum(axis=0)
            cost[count >= per] = np.inf
            g = int(np.argmin(cost))
            gpu_of[i], count[g] = g, count[g] + 1
            gpu_load[:, g] += item_w[:, i]
        order = np.lexsort((-item_w.sum(axis=0), gpu_of))
        rows.append(items[order])
    return Placement(np.stack(rows), gpus)
