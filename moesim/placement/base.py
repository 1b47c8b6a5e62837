"""Placement representation in DeepSeek EPLB's vocabulary.

``phy2log[layers, R]``: the logical expert held by each physical slot; slot ``j`` lives on GPU
``j // (R / gpus)``. ``logcnt[layers, E]``: replicas per logical expert. ``log2phy`` lists each expert's slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placement:
    """Physical expert slots of every MoE layer. Equal slots per GPU."""

    phy2log: np.ndarray  # [layers, R] int
    gpus: int

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

    def choose_slots(self, layer: int, topk_ids: np.ndarray) -> np.ndarray:
        """Physical slot for every (token, k) assignment [N, k].

        One replica: that slot. Several: round-robin over the flattened (token, k) position (vLLM's rule),
        which spreads an expert's assignments evenly over its replicas.
        """
        row = self.phy2log[layer]
        experts = int(row.max()) + 1
        order = np.argsort(row, kind="stable")
        counts = np.bincount(row, minlength=experts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        flat = topk_ids.ravel()
        pick = first[flat] + np.arange(flat.size) % counts[flat]
        return order[pick].reshape(topk_ids.shape)
