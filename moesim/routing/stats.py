"""Synthetic router statistics: per-layer expert popularity ``p[layers, experts]`` (rows sum to 1)."""

from __future__ import annotations

import numpy as np

from moesim.config.schema import DirichletStats, PowerLawStats, UniformStats, ZipfStats


def expert_popularity(stats: UniformStats | ZipfStats | PowerLawStats | DirichletStats, layers: int,
                      experts: int, rng: np.random.Generator, tokens: int = 1, top_k: int = 1) -> np.ndarray:
    """Return ``p[layers, experts]``; which experts are hot differs per layer (independent permutations).

    zipf: ``p ∝ rank**-alpha`` (alpha 0 is balanced; AIConfigurator's power-law convention, where ≈1.01 fits
    DeepSeek-V3/R1 and ≈1.2 Qwen3-235B). dirichlet: ``p ~ Dir(concentration · 1)`` per layer.
    """
    if isinstance(stats, UniformStats):
        return np.full((layers, experts), 1.0 / experts)
    if isinstance(stats, PowerLawStats):
        return _power_law(stats.alpha, layers, experts, tokens, top_k, rng)
    if isinstance(stats, DirichletStats):
        p = rng.dirichlet(np.full(experts, stats.concentration), size=layers)
        p = np.maximum(p, 1e-12)
        return p / p.sum(axis=1, keepdims=True)
    base = np.arange(1, experts + 1, dtype=np.float64) ** -stats.alpha
    base /= base.sum()
    return np.stack([base[rng.permutation(experts)] for _ in range(layers)])


def _power_law(alpha: float, layers: int, experts: int, tokens: int, top_k: int,
               rng: np.random.Generator) -> np.ndarray:
    """Per-expert loads iid from the bounded power law p(x) ∝ x**-alpha on [lo, hi], by inverse CDF.

    Bounds follow AIConfigurator's collect_moe.py (power_law_logits_v3), so its fitted alphas carry over:
    [1, 0.8·tokens] when tokens·top_k > experts, else [0.01, 2]; ``tokens`` is the layer's routed tokens.
    """
    lo, hi = (1.0, 0.8 * tokens) if tokens * top_k > experts else (0.01, 2.0)
    hi = max(hi, lo * (1 + 1e-9))
    u = rng.random((layers, experts))
    if abs(alpha - 1.0) < 1e-9:
        x = lo * (hi / lo) ** u
    else:
        a = 1.0 - alpha
        x = ((hi**a - lo**a) * u + lo**a) ** (1.0 / a)
    return x / x.sum(axis=1, keepdims=True)
