"""Placement representation in DeepSeek EPLB's vocabulary.

``phy2log[layers, R]``: the logical expert held by each physical slot; slot ``j`` lives on GPU
``j // (R / gpus)``. ``logcnt[layers, E]``: replicas per logical expert. ``log2phy`` lists each expert's slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.util.jit import kernel


@dataclass(frozen=True)
class Placement:
    """Physical expert slots of every MoE layer. Equal slots per GPU."""

    phy2log: np.ndarray  # [layers, R] int
    gpus: int
    phyrank: np.ndarray | None = None  # [layers, R] replica rank of each slot (EPLB's order), if known

    def log2phy_table(self) -> np.ndarray:
        """[layers, E, max replicas] the slots of each expert by replica rank, padded with -1 (EPLB's
        ``log2phy``); slot order where the rank is not known."""
        layers, slots = self.phy2log.shape
        rank = self.phyrank if self.phyrank is not None else _slot_rank(self.phy2log)
        cnt = self.logcnt
        out = np.full((layers, cnt.shape[1], int(cnt.max())), -1, dtype=np.int64)
        out[np.arange(layers)[:, None], self.phy2log, rank] = np.arange(slots)
        return out

    @property
    def slots_per_gpu(self) -> int:
        return self.phy2log.shape[1] // self.gpus

    @property
    def logcnt(self) -> np.ndarray:
        """[layers, E] replicas per logical expert."""
        experts = int(self.phy2log.max()) + 1
        return np.stack([np.bincount(row, minlength=experts) for row in self.phy2log])

    def slot_gpu(self) -> np.ndarray:
        """[R] the GPU of each physical slot."""
        return np.arange(self.phy2log.shape[1]) // self.slots_per_gpu

    def log2phy(self, layer: int) -> list[np.ndarray]:
        """The physical slots of each logical expert in ``layer``."""
        row = self.phy2log[layer]
        return [np.flatnonzero(row == e) for e in range(int(row.max()) + 1)]

    def choose_slots(self, layer: int, topk_ids: np.ndarray, policy: str = "round_robin",
                     src_gpu: np.ndarray | None = None, gpus_per_node: int = 8,
                     rng: np.random.Generator | None = None) -> np.ndarray:
        """Physical slot for every (token, k) assignment [N, k]; src_gpu [N] is each token's GPU.

        round_robin: the flattened (token, k) position modulo the replica count (vLLM). even: each expert's
        own assignments in order, cyclically (equal split ±1). random: uniform. nearest: a replica on the
        token's GPU, else on its node, else any; ties split by position.
        """
        row = self.phy2log[layer]
        experts = int(row.max()) + 1
        order = np.argsort(row, kind="stable")
        counts = np.bincount(row, minlength=experts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        flat = topk_ids.ravel().astype(np.int64)
        if policy == "nearest" and src_gpu is not None and counts.max() > 1:
            return self._nearest(order, first, counts, topk_ids, src_gpu, gpus_per_node)
        if policy == "even":
            o = np.argsort(flat, kind="stable")
            nth = np.empty(flat.size, dtype=np.int64)
            nth[o] = np.arange(flat.size) - np.searchsorted(flat[o], flat[o])
            pick = first[flat] + nth % counts[flat]
        elif policy == "random":
            pick = first[flat] + (rng or np.random.default_rng(0)).integers(0, counts[flat])
        elif _round_robin_jit is not None:  # the same slots in one compiled pass (no [N·k] temporaries)
            return _round_robin_jit(order, first, counts, flat).reshape(topk_ids.shape)
        else:
            pick = first[flat] + np.arange(flat.size) % counts[flat]
        return order[pick].reshape(topk_ids.shape)

    def _nearest(self, order, first, counts, topk_ids, src_gpu, gpn) -> np.ndarray:
        n, k = topk_ids.shape
        width = int(counts.max())
        flat = topk_ids.ravel().astype(np.int64)
        j = np.arange(width)
        valid = j[None, :] < counts[flat][:, None]  # [A, width]
        cand = order[np.minimum(first[flat][:, None] + j[None, :], order.size - 1)]  # slots
        gpu = self.slot_gpu()[cand]
        src = np.repeat(src_gpu, k)[:, None]
        pri = np.where(valid, 2 * (gpu == src) + (gpu // gpn == src // gpn), -1)
        best = pri == pri.max(axis=1, keepdims=True)
        nbest = best.sum(axis=1)
        want = np.arange(flat.size) % nbest  # spread ties by position
        rank = np.cumsum(best, axis=1) - 1
        col = np.argmax(best & (rank == want[:, None]), axis=1)
        return cand[np.arange(flat.size), col].reshape(n, k)


def _round_robin_py(order, first, counts, flat):
    """Round-robin slots [A] of the assignments ``flat`` [A]: ``order[first[e] + i % counts[e]]`` for
    assignment i of expert e, as the numpy expression (which divides even for the experts with one slot)."""
    out = np.empty(flat.size, dtype=order.dtype)
    for i in range(flat.size):
        e = flat[i]
        c = counts[e]
        out[i] = order[first[e] + (i % c if c > 1 else 0)]
    return out


_round_robin_jit = kernel()(_round_robin_py) if kernel is not None else None


def _slot_rank(phy2log: np.ndarray) -> np.ndarray:
    """[layers, R] how many earlier slots of the layer hold the same expert."""
    rank = np.empty_like(phy2log)
    for layer, row in enumerate(phy2log):
        order = np.argsort(row, kind="stable")
        first = np.searchsorted(row[order], row[order])
        rank[layer, order] = np.arange(row.size) - first
    return rank
