"""Synthetic router statistics: per-layer expert popularity ``p[layers, experts]`` (rows sum to 1)."""

from __future__ import annotations

import numpy as np

from moesim.config.schema import DirichletStats, UniformStats, ZipfStats


def expert_popularity(stats: UniformStats | ZipfStats | DirichletStats, layers: int, experts: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Return ``p[layers, experts]``; which experts are hot differs per layer (independent permutations).

    zipf: ``p ∝ rank**-alpha`` (alpha 0 is balanced; AIConfigurator's power-law convention, where ≈1.01 fits
    DeepSeek-V3/R1 and ≈1.2 Qwen3-235B). dirichlet: ``p ~ Dir(concentration · 1)`` per layer.
    """
    if isinstance(stats, UniformStats):
        return np.full((layers, experts), 1.0 / experts)
    if isinstance(stats, DirichletStats):
        p = rng.dirichlet(np.full(experts, stats.concentration), size=layers)
        p = np.maximum(p, 1e-12)
        return p / p.sum(axis=1, keepdims=True)
    base = np.arange(1, experts + 1, dtype=np.float64) ** -stats.alpha
    base /= base.sum()
    return np.stack([base[rng.permutation(experts)] for _ in range(layers)])
