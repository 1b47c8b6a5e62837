"""Synthetic router statistics: per-layer expert popularity ``p[layers, experts]`` (rows sum to 1)."""

from __future__ import annotations

import numpy as np

from moesim.config.schema import (
    DirichletStats,
    HistogramStats,
    HotStats,
    PowerLawStats,
    TraceStats,
    UniformStats,
)
from moesim.routing.sources import load_histogram, load_trace

FLOOR = 1e-9  # relative floor: an expert never seen in a histogram stays (barely) selectable


def expert_popularity(stats, layers: int, experts: int, rng: np.random.Generator, tokens: int = 1,
                      top_k: int = 1) -> np.ndarray:
    """Return ``p[layers, experts]`` (rows sum to 1).

    zipf: ``p ∝ rank**-alpha`` (alpha 0 is balanced). power_law: AIConfigurator's convention (≈1.01 fits
    DeepSeek-V3/R1, ≈1.2 Qwen3-235B). dirichlet: ``Dir(concentration · 1)``. hot: ``hot`` experts share
    ``share``. Synthetic laws rank experts per layer by an AR(1) latent with ``layer_correlation``
    (0: independent per layer). histogram / trace: the file's per-layer loads.
    """
    if isinstance(stats, UniformStats):
        return np.full((layers, experts), 1.0 / experts)
    if isinstance(stats, HistogramStats):
        return _normalise(load_histogram(stats.path, stats.key, stats.step, layers, experts))
    if isinstance(stats, TraceStats):
        ids, _ = load_trace(stats.path, layers, experts)
        return _normalise(np.stack([np.bincount(layer.ravel(), minlength=experts) for layer in ids]).astype(float))
    if isinstance(stats, PowerLawStats):
        values = _power_law(stats.alpha, layers, experts, tokens, top_k, rng)
    elif isinstance(stats, DirichletStats):
        values = rng.dirichlet(np.full(experts, stats.concentration), size=layers)
    elif isinstance(stats, HotStats):
        hot = min(stats.hot, experts)
        row = np.full(experts, (1 - stats.share) / max(experts - hot, 1))
        row[:hot] = stats.share / hot
        values = np.tile(row, (layers, 1))
    else:
        values = np.tile(np.arange(1, experts + 1, dtype=np.float64) ** -stats.alpha, (layers, 1))
    return _normalise(_rank_by_latent(values, stats.layer_correlation, rng, stats.drift, stats.step))


def _normalise(load: np.ndarray) -> np.ndarray:
    """Per-layer shares [layers, E], every one finite and positive (the compiled routing kernels index with
    them: a NaN share read out of bounds)."""
    load = load / load.max(axis=1, keepdims=True).clip(min=1e-300)  # shares: no sum can overflow
    p = np.maximum(load, FLOOR)
    p = p / p.sum(axis=1, keepdims=True)
    if not np.isfinite(p).all():
        raise ValueError("expert shares are not finite numbers: the histogram's counts cannot be normalised")
    return p


def _rank_by_latent(values: np.ndarray, rho: float, rng: np.random.Generator, drift: float = 0.0,
                    step: int = 0) -> np.ndarray:
    """Give layer l's largest value to the expert with the largest latent z_l, where
    z_l = rho·z_(l-1) + sqrt(1 - rho²)·ε (independent per layer at rho 0, identical at rho 1); then every
    layer's latent drifts ``step`` times: z ← sqrt(1 - drift²)·z + drift·ε (a separate random stream, so
    step 0 is the same whatever the drift)."""
    layers, experts = values.shape
    z = np.empty((layers, experts))
    z[0] = rng.standard_normal(experts)
    for layer in range(1, layers):
        z[layer] = rho * z[layer - 1] + np.sqrt(max(0.0, 1 - rho**2)) * rng.standard_normal(experts)
    if drift > 0 and step > 0:
        walk = np.random.default_rng(rng.integers(2**63))
        keep = np.sqrt(1 - drift**2)
        for _ in range(step):
            z = keep * z + drift * walk.standard_normal(z.shape)
    out = np.empty_like(values)
    for layer in range(layers):
        out[layer, np.argsort(-z[layer], kind="stable")] = np.sort(values[layer])[::-1]
    return out


def coactivation_mixture(p: np.ndarray, co, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster popularity [C, E] (each cluster boosts its own expert set by 1 + strength) and the
    cluster weights [C] (equal)."""
    c, e = co.clusters, p.size
    out = np.tile(p, (c, 1))
    for i in range(c):
        out[i, rng.choice(e, min(co.experts_per_cluster, e), replace=False)] *= 1.0 + co.strength
    return out / out.sum(axis=1, keepdims=True), np.full(c, 1.0 / c)


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
