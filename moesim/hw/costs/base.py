"""The one interface every compute-cost model implements (roofline, measured profile, silicon profile).

Each method takes per-GPU token counts and returns seconds per GPU [G]; the optional tables (attention core,
dense FFN, GEMMs) return None where a model has none, and the caller then uses the roofline. Builders call
only these methods: no model is probed for attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

AttentionFn = Callable[[np.ndarray, bool, int], np.ndarray]  # (tokens [G], decode, context) -> seconds [G]
FfnFn = Callable[[np.ndarray], np.ndarray]  # tokens [G] -> seconds [G]
GemmFn = Callable[[np.ndarray, int, int], np.ndarray]  # (tokens [G], n, k) -> seconds [G]


class CostModel(ABC):
    """Compute costs of one model on one GPU. ``source``: where the figures come from, for the summary."""

    source: str = ""

    @abstractmethod
    def router(self, tokens: np.ndarray) -> np.ndarray:
        """Router GEMM and top-k for ``tokens`` [G] local tokens."""

    @abstractmethod
    def permute(self, tokens: np.ndarray) -> np.ndarray:
        """Copy each token k times, grouped by destination."""

    @abstractmethod
    def unpermute(self, tokens: np.ndarray) -> np.ndarray:
        """Gather the k expert outputs of each token back, weighted sum."""

    @abstractmethod
    def expert(self, slot_tokens: np.ndarray, regroup: bool = False) -> np.ndarray:
        """Routed experts: slot_tokens [G, S] tokens per local expert slot -> [G]; ``regroup`` adds ``regroup``."""

    @abstractmethod
    def regroup(self, slot_tokens: np.ndarray) -> np.ndarray:
        """Sort received copies by local expert before the GEMMs and back after [G]."""

    @abstractmethod
    def shared(self, tokens: np.ndarray) -> np.ndarray:
        """Shared experts (always on, no dispatch) for ``tokens`` [G]."""

    def gate(self, tokens: np.ndarray) -> np.ndarray:
        """Router + permute [G]."""
        return self.router(tokens) + self.permute(tokens)

    def attention_core_fn(self, m: Any, kind: Any) -> AttentionFn | None:
        """The attention core of blocks of ``kind`` (``moesim.model.layers.AttentionKind``) of ``ModelSpec`` m
        from measured tables, or None (the roofline times it)."""
        return None

    def dense_ffn_fn(self, m: Any) -> FfnFn | None:
        """A dense SwiGLU FFN of width ``intermediate_size`` from measured tables, or None (roofline)."""
        return None

    def gemm_fn(self, bf16: bool = False) -> GemmFn | None:
        """GEMMs with weights in the model's dtype (or BF16) from measured tables, or None (roofline)."""
        return None
