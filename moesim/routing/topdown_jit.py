"""The top-down sampler (``topdown.py``) with its per-row work compiled by numba, when numba is installed
(``pip install 'moesim[fast]'``). Same output, bit for bit: the random draws stay numpy calls on the same
``Generator``, in the same order and sizes as ``topdown._Sampler`` makes them, and the compiled loops do the
same float arithmetic per row. The numpy version spends its time in dozens of array passes per step over a
few thousand rows; here each step is one pass. ``tests/test_routing.py`` checks the two agree;
``MOESIM_NO_JIT=1`` forces the numpy version.
"""

from __future__ import annotations

import numpy as np

from moesim.jit import njit  # None without numba: the numpy sampler is the reference and stays

REJECT_ROUNDS = 4  # as topdown._REJECT_ROUNDS
INT_MAX = np.iinfo(np.int64).max


def available() -> bool:
    return njit is not None


def run_chunk(sm, n: int) -> np.ndarray:
    """``topdown._Sampler.run(n)``: top-k ids [n, top_k] int32, each row in descending score order."""
    pr, g, d = sm.params, sm.groups, sm.depth
    tg = pr.topk_group if pr.group_limited else 1
    tg = g if tg >= g else tg
    m = n * g
    grp = np.tile(np.arange(g), n)
    rem = sm.mass[grp]
    last = np.full(m, np.inf)
    vals, ids = np.empty((d, m)), np.empty((d, m), dtype=np.int64)
    ones = np.ones(m, dtype=bool)
    for j in range(d):
        v, e = _next(sm, grp, rem, last, np.ascontiguousarray(ids[:j].T), ones)
        rem = rem - sm.p[e]
        vals[j], ids[j] = v, e
        last = v
    keep = _keep(vals, n, g, tg, pr.scoring_func == "sigmoid")
    st = _merge_init(keep, vals, ids, rem, n, g, tg, d, pr.top_k)
    group, head_v, head_e, buf_v, buf_e, rem_m, excl, used, has_buf = st
    out = np.empty((n, pr.top_k), dtype=np.int32)
    for j in range(pr.top_k):
        rg, emitted = _emit(j, out, head_v, head_e, buf_v, buf_e, has_buf, n, tg, j == pr.top_k - 1)
        if j == pr.top_k - 1:
            break
        if rg.size:
            v, e = _next(sm, group[rg], rem_m[rg], emitted, excl[rg], used[rg] < sm.size)
            _apply(rg, v, e, head_v, head_e, excl, used, rem_m, sm.p)
    return out


def _next(sm, grp, rem, last, excl, avail):
    """``_Sampler._next``: each row's next largest value below ``last`` and its expert (-1 if none left).
    Draws as the numpy sampler does: M exponentials, one uniform per available row, then the redraws."""
    x = sm.rng.standard_exponential(rem.size)
    n_av = int(np.count_nonzero(avail))
    u = sm.rng.random(n_av) if n_av else np.empty(0)
    v, e, remc, todo = _first_pass(rem, last, x, avail, u, grp, excl, sm.prob, sm.alias, sm.size)
    if n_av == 0 or excl.shape[1] == 0:
        return v, e
    for _ in range(REJECT_ROUNDS):
        if todo.size == 0:
            return v, e
        todo = _redraw(sm.rng.random(todo.size), todo, grp, excl, e, sm.prob, sm.alias, sm.size)
    if todo.size:
        e[todo] = _invert(sm, grp[todo], remc[todo], excl[todo])
    return v, e


def _invert(sm, grp, rem, excl):
    """``_Sampler._invert``: inversion on the group's mass, stepping over the excluded experts."""
    ex = np.sort(np.where(excl >= 0, excl, INT_MAX), axis=1)
    e = np.empty(grp.size, dtype=np.int64)
    todo = np.arange(grp.size)
    for _ in range(100):
        todo = _invert_step(sm.rng.random(todo.size), todo, grp, rem, ex, e, sm.p, sm.cum, sm.size)
        if todo.size == 0:
            return e
    raise RuntimeError("top-down sampler: could not draw outside the excluded experts")


# ---- compiled per-row work (plain Python when numba is missing; then unused) ----

def _first_pass(rem, last, x, avail, u, grp, excl, prob, alias, size):
    """Values of every row, the alias draw of every available row (uniforms ``u`` in row order) and the
    rows whose draw is excluded (to redraw)."""
    m = rem.size
    v = np.empty(m)
    remc = np.empty(m)
    e = np.full(m, -1, dtype=np.int64)
    hit = np.zeros(m, dtype=np.bool_)
    j = 0
    for i in range(m):
        r = rem[i] if rem[i] > 0.0 else 0.0
        remc[i] = r
        if not avail[i]:
            v[i] = -1.0
            continue
        v[i] = r / (r / last[i] + x[i])
        w = u[j] * size
        j += 1
        col = np.int64(w)
        idx = grp[i] * size + col
        ee = idx if w - col < prob[idx] else alias[idx]
        e[i] = ee
        for c in range(excl.shape[1]):
            if excl[i, c] == ee:
                hit[i] = True
    return v, e, remc, np.flatnonzero(hit)


def _redraw(u0, todo, grp, excl, e, prob, alias, size):
    keep = np.zeros(todo.size, dtype=np.bool_)
    for j in range(todo.size):
        i = todo[j]
        u = u0[j] * size
        col = np.int64(u)
        idx = grp[i] * size + col
        e[i] = idx if u - col < prob[idx] else alias[idx]
        for c in range(excl.shape[1]):
            if excl[i, c] == e[i]:
                keep[j] = True
    return todo[keep]


def _invert_step(u, todo, grp, rem, ex, e, p, cum, size):
    keep = np.zeros(todo.size, dtype=np.bool_)
    for j in range(todo.size):
        i = todo[j]
        lo = grp[i] * size
        x = cum[lo] + u[j] * rem[i]
        for c in range(ex.shape[1]):
            ci = ex[i, c]
            if ci < p.size and x >= cum[ci]:
                x = x + p[ci]
        got = np.searchsorted(cum, x, side="right") - 1
        got = min(max(got, lo), lo + size - 1)
        e[i] = got
        for c in range(ex.shape[1]):
            if ex[i, c] == got:
                keep[j] = True
    return todo[keep]


def _keep(vals, n, g, tg, sigmoid):
    """[n, tg] kept groups: all of them, or the tg best group scores (a set; the merge orders by value)."""
    keep = np.empty((n, tg), dtype=np.int64)
    score = np.zeros(g)
    taken = np.zeros(g, dtype=np.bool_)
    for t in range(n):
        if tg >= g:
            for j in range(g):
                keep[t, j] = j
            continue
        for j in range(g):
            s = 0.0
            for d in range(vals.shape[0]):
                v = vals[d, t * g + j]
                s += v / (1.0 + v) if sigmoid else v
            score[j] = s
            taken[j] = False
        for q in range(tg):
            best = -1
            for j in range(g):
                if not taken[j] and (best < 0 or score[j] > score[best]):
                    best = j
            taken[best] = True
            keep[t, q] = best
    return keep


def _merge_init(keep, vals, ids, rem1, n, g, tg, depth, k):
    rows = n * tg
    group = np.empty(rows, dtype=np.int64)
    head_v, head_e = np.empty(rows), np.empty(rows, dtype=np.int64)
    buf_v, buf_e = np.empty(rows), np.empty(rows, dtype=np.int64)
    rem = np.empty(rows)
    excl = np.full((rows, k + depth), -1, dtype=np.int64)
    used = np.full(rows, depth, dtype=np.int64)
    has_buf = np.full(rows, depth == 2)
    for t in range(n):
        for s in range(tg):
            r, f = t * tg + s, t * g + keep[t, s]
            group[r] = keep[t, s]
            head_v[r], head_e[r] = vals[0, f], ids[0, f]
            b = 1 if depth == 2 else 0
            buf_v[r], buf_e[r] = vals[b, f], ids[b, f]
            rem[r] = rem1[f]
            for j in range(depth):
                excl[r, j] = ids[j, f]
    return group, head_v, head_e, buf_v, buf_e, rem, excl, used, has_buf


def _emit(j, out, head_v, head_e, buf_v, buf_e, has_buf, n, tg, last_step):
    """Emit every token's largest head; rows that emitted their buffered value take it as the new head, the
    others ([rows], [emitted values]) need a new draw."""
    pick = np.empty(n, dtype=np.int64)
    nb = 0
    for t in range(n):
        best = t * tg
        for s in range(1, tg):
            if head_v[t * tg + s] > head_v[best]:
                best = t * tg + s
        pick[t] = best
        out[t, j] = head_e[best]
        if not has_buf[best]:
            nb += 1
    rg = np.empty(0 if last_step else nb, dtype=np.int64)
    emitted = np.empty(rg.size)
    if last_step:
        return rg, emitted
    c = 0
    for t in range(n):
        r = pick[t]
        if has_buf[r]:
            head_v[r], head_e[r], has_buf[r] = buf_v[r], buf_e[r], False
        else:
            rg[c], emitted[c] = r, head_v[r]
            c += 1
    return rg, emitted


def _apply(rg, v, e, head_v, head_e, excl, used, rem, p):
    for q in range(rg.size):
        r = rg[q]
        head_v[r], head_e[r] = v[q], e[q]
        excl[r, used[r]] = e[q]
        used[r] += 1
        rem[r] -= p[e[q]]


if njit is not None:
    _jit = njit(cache=True, nogil=True)  # nogil: layers route in parallel threads
    _first_pass, _redraw = _jit(_first_pass), _jit(_redraw)
    _invert_step, _keep, _merge_init = _jit(_invert_step), _jit(_keep), _jit(_merge_init)
    _emit, _apply = _jit(_emit), _jit(_apply)
