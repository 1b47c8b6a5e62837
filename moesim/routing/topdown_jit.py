"""The top-down sampler (``topdown.py``) as one compiled loop over tokens, when numba is installed
(``pip install 'moesim[fast]'``). Same ids, bit for bit: the draws come from the same counter-based
generator (``counter.py``) at the same counters, and each token does the same float operations in the same
order as the numpy passes do for its rows. Tokens go in blocks of 256, the block's arrays slot- or
group-major: its exponentials and first alias uniforms are drawn in branch-free loops that LLVM vectorizes,
phase 1 and the group scores run over the block's tokens, and the merge token by token. DeepSeek-V3 routing
costs about 0.3 µs a token here against about 2.5 µs in the numpy passes (``python bench/bench_kernels.py``).
``tests/test_kernels.py`` checks the two agree; ``MOESIM_NO_JIT=1`` forces numpy.
"""

from __future__ import annotations

import numpy as np

from moesim.routing import counter as cr
from moesim.util.jit import bits_f64, f64_bits, kernel  # None without numba: the numpy sampler stays the reference

INT_MAX = np.iinfo(np.int64).max


def available() -> bool:
    return kernel is not None


def route_tokens(sm, n: int) -> np.ndarray:
    """``topdown._Sampler.run(0, n)``: top-k ids [n, top_k] int32, each row in descending score order."""
    pr = sm.params
    out = np.empty((n, pr.top_k), dtype=np.int32)
    _route(np.uint64(sm.key), n, sm.p, sm.cum, sm.mass, sm.prob, candidates(sm.alias), sm.groups, sm.size,
           sm.depth, sm.kept, pr.top_k, pr.scoring_func == "sigmoid", sm.slots, out)
    return out


def candidates(alias: np.ndarray) -> np.ndarray:
    """[2E] int64: entry 2i is column i's alias, 2i + 1 column i itself. An alias draw indexes this with its
    coin (``_pick``) instead of choosing between the two: the coin is unpredictable, and as a branch (LLVM
    turned the select into one) it was mispredicted often enough that phase 1 cost three times as much."""
    return np.stack([alias, np.arange(alias.size)], axis=1).ravel()


def alias_tables(p, sums):
    """``topdown._alias_tables`` (p [G, S] float64, sums [G] its row sums as numpy adds them up): the same
    small/large stacks, popped from the end."""
    g, size = p.shape
    prob = np.ones((g, size))
    alias = np.empty((g, size), dtype=np.int64)
    small, large = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
    for row in range(g):
        for i in range(size):
            alias[row, i] = i
        scaled = p[row] * size / sums[row]
        ns = nl = 0
        for i in range(size):
            if scaled[i] < 1.0:
                small[ns] = i
                ns += 1
            else:
                large[nl] = i
                nl += 1
        while ns > 0 and nl > 0:
            s, lg = small[ns - 1], large[nl - 1]
            ns -= 1
            nl -= 1
            prob[row, s], alias[row, s] = scaled[s], lg
            scaled[lg] -= 1.0 - scaled[s]
            if scaled[lg] < 1.0:
                small[ns] = lg
                ns += 1
            else:
                large[nl] = lg
                nl += 1
    return prob, alias


# ---- compiled (plain Python when numba is missing; then unused) ----

def _bits(key, c):
    z = key + (c + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(key, c):
    return np.float64(_bits(key, c) >> np.uint64(11)) * cr.TWO_M53


def _exponential(key, c):
    """``counter.exponential``: -ln(u) with ``counter.ln_unit``'s operations, one by one."""
    u = (np.float64(_bits(key, c) >> np.uint64(11)) + 0.5) * cr.TWO_M53
    b = f64_bits(u)
    e = np.int64((b >> cr.S52) & cr.EXP_MASK) - 1022
    m = bits_f64((b & cr.MANT_MASK) | cr.HALF_BITS)
    if m < cr.SQRT_HALF:
        m = m * 2.0
        e -= 1
    f = m - 1.0
    s = f / (2.0 + f)
    return -(np.float64(e) * cr.LN2 + 2.0 * s * _series(s * s))


_series = cr.atanh_series


def _ctr(t, slot, sub, slots):
    return (np.uint64(t) * np.uint64(slots) + np.uint64(slot)) * np.uint64(cr.SUBS) + np.uint64(sub)


def _route(key, n, p, cum, mass, prob, cand, g, size, d, tg, k, sigmoid, slots, out):
    """Tokens in blocks: the block's value draws, phase 1 for the whole block, then the kept groups, then
    the merge."""
    blk = 256
    v1, e1, rem1 = np.empty((2, g, blk)), np.empty((2, g, blk), dtype=np.int64), np.empty((g, blk))
    xs, ws = np.empty((slots, blk)), np.empty((slots, blk))
    score, kept = np.empty((g, blk)), np.empty((blk, g), dtype=np.int64)
    rank, redo = np.empty((g, blk), dtype=np.int64), np.empty((g, blk), dtype=np.bool_)
    fs, ins = np.empty((3, tg, blk)), np.empty((4, tg, blk), dtype=np.int64)
    excl, tmp = np.empty((tg, d + k, blk), dtype=np.int64), np.empty((1, d + k), dtype=np.int64)
    srt = np.empty(d + k, dtype=np.int64)
    for t0 in range(0, n, blk):
        nb = min(blk, n - t0)
        _draws(key, t0, nb, slots, size, xs, ws)
        _phase1(key, t0, nb, g, d, slots, mass, prob, cand, size, p, cum, v1, e1, rem1, tmp, srt, xs, ws, redo)
        _keep(v1, nb, g, d, tg, sigmoid, score, kept, rank)
        _merge(key, t0, nb, g, d, tg, k, slots, prob, cand, size, p, cum, v1, e1, rem1, kept, fs, ins, excl, tmp,
               srt, out, xs, ws)


def _draws(key, t0, nb, slots, size, xs, ws):
    """Every slot's exponential and first alias uniform (scaled by the group size) for tokens t0..t0+nb-1,
    in loops without branches that LLVM vectorizes (``moesim.util.jit.kernel``); the merge uses some of them."""
    for q in range(slots):
        for i in range(nb):
            xs[q, i] = _exponential(key, _ctr(t0 + i, q, cr.SUB_EXP, slots))
    for q in range(slots):
        for i in range(nb):
            ws[q, i] = _alias_w(key, _ctr(t0 + i, q, cr.SUB_ALIAS, slots), size)


def _invert(key, t, slot, slots, grp, rem, ex, row, nex, size, p, cum, srt):
    """The rare path of a draw (a hot expert drawn already and five alias draws on it): inversion on the
    group's mass, stepping over the excluded experts ``ex[row, :nex]`` in ascending id order."""
    for i in range(nex):
        srt[i] = ex[row, i]
    srt[:nex].sort()
    lo = grp * size
    for a in range(cr.INVERT_TRIES):
        x = cum[lo] + _uniform(key, _ctr(t, slot, cr.SUB_INVERT + a, slots)) * rem
        for i in range(nex):
            if x >= cum[srt[i]]:
                x = x + p[srt[i]]
        got = np.searchsorted(cum, x, side="right") - 1
        e = min(max(got, lo), lo + size - 1)
        if not _hit(ex, row, nex, e):
            return e
    raise RuntimeError("top-down sampler: could not draw outside the excluded experts")


def _alias_w(key, c, size):
    """Walker's alias method's one uniform, scaled by the group size (``_pick`` turns it into an expert)."""
    return _uniform(key, c) * size


# The passes below each take a block of tokens: arrays are passed once per block, never per draw (a call
# with array arguments costs reference counting, which was most of a draw's time when helpers took them).

def _pick(w, j, size, prob, cand):
    """The alias draw's expert in group j from its scaled uniform w: the column, then the column itself or
    its alias by the coin ``w - col < prob``, read from ``cand`` (``candidates``) at an address, not a branch."""
    col = min(np.int64(w), size - 1)
    idx = j * size + col
    return cand[2 * idx + np.int64(w - col < prob[idx])]


def _phase1(key, t0, nb, g, d, slots, mass, prob, cand, size, p, cum, v1, e1, rem1, ex, srt, xs, ws, redo):
    """Phase 1 of tokens t0..t0+nb-1: each group's largest value (no exclusion), then its second. Arrays are
    [.., group, token] so every loop runs over the block's tokens. The second value's expert is drawn for all
    tokens first; the few that drew their group's first expert again (``redo``) take the redraws and the
    inversion in a loop of their own, so the common loop has no branch on the draw."""
    for j in range(g):
        rc = mass[j] if mass[j] > 0.0 else 0.0
        for i in range(nb):
            e = _pick(ws[j * d, i], j, size, prob, cand)
            v1[0, j, i], e1[0, j, i] = rc / xs[j * d, i], e  # rc / (rc / inf + x) of the numpy passes, same bits
            rem1[j, i] = mass[j] - p[e]
    if d < 2:
        return
    for j in range(g):
        slot = j * d + 1
        for i in range(nb):
            r = rem1[j, i]
            rc = r if r > 0.0 else 0.0
            e = _pick(ws[slot, i], j, size, prob, cand)
            v1[1, j, i] = rc / (rc / v1[0, j, i] + xs[slot, i])
            e1[1, j, i] = e
            redo[j, i] = e == e1[0, j, i]
    for j in range(g):
        slot = j * d + 1
        for i in range(nb):
            if redo[j, i]:
                first, e = e1[0, j, i], e1[1, j, i]
                for q in range(1, 1 + cr.REDRAWS):
                    e = _pick(_alias_w(key, _ctr(t0 + i, slot, cr.SUB_ALIAS + q, slots), size), j, size, prob, cand)
                    if e != first:
                        break
                if e == first:
                    r = rem1[j, i]
                    ex[0, 0] = first
                    e = _invert(key, t0 + i, slot, slots, j, r if r > 0.0 else 0.0, ex, 0, 1, size, p, cum, srt)
                e1[1, j, i] = e
    for j in range(g):
        for i in range(nb):
            rem1[j, i] = rem1[j, i] - p[e1[1, j, i]]


def _keep(v1, nb, g, d, tg, sigmoid, score, kept, rank):
    """``_Sampler._keep_groups`` for the block: kept [token, tg] by descending score, ties to the lower id.
    score, rank [g, blk]: scratch."""
    if tg >= g:
        for i in range(nb):
            for j in range(g):
                kept[i, j] = j
        return
    for j in range(g):
        for i in range(nb):
            score[j, i] = 0.0
    for q in range(d):
        for j in range(g):
            if sigmoid:
                for i in range(nb):
                    score[j, i] = score[j, i] + v1[q, j, i] / (1.0 + v1[q, j, i])
            else:
                for i in range(nb):
                    score[j, i] = score[j, i] + v1[q, j, i]
    for j in range(g):
        for i in range(nb):
            rank[j, i] = 0
        for c in range(g):
            for i in range(nb):
                rank[j, i] += (score[c, i] > score[j, i]) | ((score[c, i] == score[j, i]) & (c < j))
    for i in range(nb):
        for j in range(g):
            if rank[j, i] < tg:
                kept[i, rank[j, i]] = j


def _hit(ex, row, nex, e):
    """Whether expert e is among the ``nex`` excluded experts ``ex[row, :nex]`` (what a group has drawn)."""
    hit = False
    for c in range(nex):
        hit |= ex[row, c] == e
    return hit


def _merge(key, t0, nb, g, d, tg, k, slots, prob, cand, size, p, cum, v1, e1, rem1, kept, fs, ins, excl, tmp,
           srt, out, xs, ws):
    """The k-way merge of each token's kept groups, step by step over the block's tokens: a token's steps
    depend on each other, the tokens of one step do not, so the processor overlaps them (about 20 ns a token
    less than token by token). Per (kept group, token): fs [3, tg, blk] head value, buffered
    value, mass left; ins [4, tg, blk] head expert, buffered expert, buffer present, experts drawn; excl
    [tg, d + k, blk] the experts drawn; tmp [1, d + k] scratch for the rare inversion; xs, ws: the block's
    draws (``_draws``). Which group leads is found for all tokens first, in loops of compares and blends
    over tokens (as a branch per token it was mispredicted about as often as the groups trade the lead).
    The step is written out here: moved to an inlined helper, routing cost twice as much."""
    for s in range(tg):
        for i in range(nb):
            j = kept[i, s]
            fs[0, s, i], fs[1, s, i], fs[2, s, i] = v1[0, j, i], v1[d - 1, j, i], rem1[j, i]
            ins[0, s, i], ins[1, s, i], ins[2, s, i], ins[3, s, i] = e1[0, j, i], e1[d - 1, j, i], d == 2, d
            for q in range(d):
                excl[s, q, i] = e1[q, j, i]
    lead, top = np.empty(nb, dtype=np.int64), np.empty(nb)
    for m in range(k):
        for i in range(nb):
            lead[i], top[i] = 0, fs[0, 0, i]
        for s in range(1, tg):  # over tokens: vector compares and blends, no branch on which group leads
            for i in range(nb):
                c = fs[0, s, i] > top[i]
                lead[i] = s if c else lead[i]
                top[i] = fs[0, s, i] if c else top[i]
        for i in range(nb):
            b = lead[i]
            out[t0 + i, m] = ins[0, b, i]
            if m == k - 1:
                continue
            if ins[2, b, i]:
                fs[0, b, i], ins[0, b, i], ins[2, b, i] = fs[1, b, i], ins[1, b, i], 0
                continue
            emitted, used = fs[0, b, i], ins[3, b, i]
            if used >= size:  # every expert of the group drawn
                fs[0, b, i], ins[0, b, i] = -1.0, -1
                continue
            t = t0 + i
            slot, grp = g * d + m, kept[i, b]
            rc = fs[2, b, i] if fs[2, b, i] > 0.0 else 0.0
            e = _pick(ws[slot, i], grp, size, prob, cand)
            hit = _drawn(excl, b, used, e, i)
            for q in range(1, 1 + cr.REDRAWS):
                if not hit:
                    break
                e = _pick(_alias_w(key, _ctr(t, slot, cr.SUB_ALIAS + q, slots), size), grp, size, prob, cand)
                hit = _drawn(excl, b, used, e, i)
            if hit:
                for c in range(used):
                    tmp[0, c] = excl[b, c, i]
                e = _invert(key, t, slot, slots, grp, rc, tmp, 0, used, size, p, cum, srt)
            fs[0, b, i], ins[0, b, i] = rc / (rc / emitted + xs[slot, i]), e
            excl[b, used, i] = e
            ins[3, b, i] = used + 1
            fs[2, b, i] -= p[e]


def _drawn(excl, b, used, e, i):
    """Whether group b of block row i has drawn expert e (among its ``used`` drawn experts): ``_hit`` on the
    merge's [tg, d + k, blk] layout. Calling ``_hit(excl[b], i, ...)`` on a [tg, blk, d + k] layout instead
    made a view per draw and cost 2-5% of routing."""
    hit = False
    for c in range(used):
        hit |= excl[b, c, i] == e
    return hit


if kernel is not None:
    _inl = kernel(inline="always")  # scalar helpers, inlined
    _bits, _uniform, _exponential, _ctr = _inl(_bits), _inl(_uniform), _inl(_exponential), _inl(_ctr)
    _series, _alias_w, _pick, _hit = _inl(_series), _inl(_alias_w), _inl(_pick), _inl(_hit)
    _drawn = _inl(_drawn)
    _jit = kernel()  # nogil: layers route in parallel threads
    _invert, _phase1, _keep, _merge = _jit(_invert), _jit(_phase1), _jit(_keep), _jit(_merge)
    _draws, _route = _jit(_draws), _jit(_route)
    alias_tables = _jit(alias_tables)
