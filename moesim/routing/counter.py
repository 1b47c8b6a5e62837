"""Counter-based random numbers for the top-down sampler: every draw is a pure function of (key, counter).

A token's draws are numbered by what they are for (which group or merge step, which retry), not by when
they are made, so the sampler can route tokens one at a time in a compiled loop or all together in numpy
passes and get the same numbers. The generator is SplitMix64 (Steele, Lea & Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014): output i of a stream is ``mix64(key + i·γ)``, which passes
BigCrush; here i is the draw's counter. Uniforms take the top 53 bits. Exponentials are ``-ln(u)`` with the
logarithm written out in bit and basic float operations (``ln_unit``), so numpy and numba round every step
alike and give the same bits (a library ``log`` may differ in the last place between numpy's SIMD loops
and libm).

Counter layout (``counter``): per token ``(slots · SUBS)`` numbers; a slot is one value draw (a phase-1
(group, depth) pair or a merge step), and inside it sub 0 is the exponential, sub 1 the alias uniform,
subs 2-5 the rejection redraws and subs 6.. the inversion retries.
"""

from __future__ import annotations

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1, M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
S30, S27, S31, S11, S52 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11), np.uint64(52)
EXP_MASK, MANT_MASK = np.uint64(0x7FF), np.uint64(0x000FFFFFFFFFFFFF)
HALF_BITS = np.uint64(0x3FE0000000000000)  # the exponent bits of 0.5
TWO_M53 = 2.0 ** -53
SUBS = 128  # numbers per slot: 1 exponential, 1 alias uniform, 4 redraws, up to 100 inversion retries
SUB_EXP, SUB_ALIAS, SUB_INVERT = 0, 1, 6
REDRAWS, INVERT_TRIES = 4, 100
SQRT_HALF = 0.7071067811865476
LN2 = 0.6931471805599453
# 2·atanh(s) = 2 (s + s³/3 + s⁵/5 + ...): with |s| ≤ 0.1716 (m in [√½, √2)) eleven terms reach 1e-17
ATANH = tuple(1.0 / (2 * i + 1) for i in range(11))


def bits(key: np.uint64, ctr: np.ndarray) -> np.ndarray:
    """SplitMix64 outputs [M] uint64 at counters ``ctr`` [M] uint64 of the stream ``key``."""
    with np.errstate(over="ignore"):
        z = key + (ctr + np.uint64(1)) * GAMMA
        z = (z ^ (z >> S30)) * M1
        z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


def uniform(key: np.uint64, ctr: np.ndarray) -> np.ndarray:
    """Uniforms [M] in [0, 1) with 53 random bits."""
    return (bits(key, ctr) >> S11).astype(np.float64) * TWO_M53


def exponential(key: np.uint64, ctr: np.ndarray) -> np.ndarray:
    """Exp(1) draws [M]: -ln(u) with u in (0, 1) (half a step off the grid's ends, so never 0 or inf)."""
    u = ((bits(key, ctr) >> S11).astype(np.float64) + 0.5) * TWO_M53
    return -ln_unit(u)


def ln_unit(u: np.ndarray) -> np.ndarray:
    """Natural log of u [M] in (0, 1), in bit and basic float operations only (the compiled twin does the
    same ones): u = m·2^e with m in [√½, √2), ln m = 2·atanh(s), s = (m - 1)/(m + 1), the atanh series
    by Estrin's scheme (a short dependency chain)."""
    b = u.view(np.uint64)
    e = ((b >> S52) & EXP_MASK).astype(np.int64) - 1022
    m = ((b & MANT_MASK) | HALF_BITS).view(np.float64)  # [0.5, 1)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = np.where(low, e - 1, e).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    return e * LN2 + 2.0 * s * atanh_series(s * s)


def atanh_series(z):
    """Σ z^i / (2i + 1), i = 0..10, by Estrin's scheme (the same operations on arrays and on scalars)."""
    a = ATANH
    z2 = z * z
    z4 = z2 * z2
    q0 = (a[0] + a[1] * z) + (a[2] + a[3] * z) * z2
    q1 = (a[4] + a[5] * z) + (a[6] + a[7] * z) * z2
    q2 = (a[8] + a[9] * z) + a[10] * z2
    return (q0 + q1 * z4) + q2 * (z4 * z4)


def counter(token: np.ndarray, slot: np.ndarray | int, sub: int, slots: int) -> np.ndarray:
    """Counters [M] uint64 of draw ``sub`` of ``slot`` for tokens ``token`` [M] (``slots`` per token)."""
    t = np.asarray(token, dtype=np.uint64)
    return (t * np.uint64(slots) + np.asarray(slot, dtype=np.uint64)) * np.uint64(SUBS) + np.uint64(sub)


def stream_key(rng: np.random.Generator) -> np.uint64:
    """A stream key drawn from ``rng``: the caller's generator still decides every number."""
    return np.uint64(rng.integers(0, np.iinfo(np.uint64).max, dtype=np.uint64, endpoint=True))
