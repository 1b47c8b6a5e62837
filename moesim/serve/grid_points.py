"""The points of a surface's grid: geometrically spaced integers and their held-out midpoints. Pure."""

from __future__ import annotations

import math

import numpy as np


def geometric_grid(lo: float, hi: float, ratio: float) -> list[int]:
    """Integers from lo to hi (both included), consecutive points at most ``ratio`` apart. The ends are
    rounded out to powers of sqrt(2) unless they coincide, so request streams drawn from one law give the
    same grid (and hit the cache) while a constant length keeps its single point."""
    lo, hi = max(1.0, lo), max(1.0, hi)
    if hi > lo * 1.02:
        lo = max(1, math.floor(2 ** (math.floor(2 * math.log2(lo)) / 2)))
        hi = math.ceil(2 ** (math.ceil(2 * math.log2(hi)) / 2))
    if hi <= lo * 1.02:
        return [max(1, round(lo))]
    n = math.ceil(math.log(hi / lo) / math.log(ratio)) + 1
    pts = sorted({round(v) for v in np.geomspace(lo, hi, n)})
    return pts


def midpoints(grid: list[int]) -> list[int]:
    """Geometric midpoints of consecutive grid points (the held-out points), where distinct from both."""
    out = [round(math.sqrt(a * b)) for a, b in zip(grid, grid[1:], strict=False)]
    return [m for m, a, b in zip(out, grid, grid[1:], strict=False) if a < m < b]
