"""Group-limited Gumbel-top-k without drawing a score for every expert (top-down Gumbel sampling).

The dense router (``router.select_topk``) draws ``r_e = p_e / Exp(1)`` for all E experts of every token and
keeps the top-k. Only a token's few largest scores matter, and they can be generated directly, largest
first (the "top-down" construction of a Gumbel process; Maddison, Tarlow & Minka, NeurIPS 2014, §4):

* the largest ``r`` among experts of total mass P is ``P / Exp(1)``, and which expert holds it is
  independent of its value, drawn with probability ∝ p;
* given the last value R and the mass P' of the experts not yet drawn, the next largest is the largest
  of P' truncated below R: ``P' / (P'/R + Exp(1))`` (from the Gumbel CDF, in r = exp(u) space).

So each group's top-1 (DeepSeek-V2 "max" group score) or top-2 ("sum_top2", DeepSeek-V3) costs 2-4 draws,
and the token's top-k inside its ``topk_group`` kept groups is a k-way merge of the groups' descending
sequences, generated lazily. The law of the chosen (expert set, scores) is exactly that of the dense
router; tests compare the two. Cost per token: O(n_group + k) draws instead of O(E).

Every draw comes from a counter-based generator (``counter.py``) numbered by token and purpose, so this
numpy version (all tokens of a chunk per pass) and the compiled one (``topdown_jit``, blocks of 256 tokens)
give the same ids bit for bit; ``MOESIM_NO_JIT=1`` forces this one.
"""

from __future__ import annotations

import numpy as np

from moesim.routing import counter as cr
from moesim.routing import topdown_jit
from moesim.routing.params import RoutingParams

_CHUNK = 8192
_FLOOR = 1e-12  # relative floor on expert probabilities: a zero-mass expert cannot be drawn by inversion


def sample_topk(popularity: np.ndarray, n_tokens: int, params: RoutingParams,
                rng: np.random.Generator) -> np.ndarray:
    """Route ``n_tokens`` tokens: top-k expert ids [n_tokens, top_k] int32, each row in descending
    score order (the order the merge emits them; a real router's ``topk`` order).

    popularity: [E] probabilities. Same law as scoring every expert with ``p / Exp(1)`` and applying the
    group limit of ``params`` then top-k. ``rng`` gives the stream key (one 64-bit draw).
    """
    p = np.maximum(popularity.astype(np.float64), _FLOOR * popularity.max())
    p /= p.sum()
    s = _Sampler(p, params, cr.stream_key(rng))
    if topdown_jit.available():
        return topdown_jit.route_tokens(s, n_tokens)
    # chunks keep the working set in cache; the counters make the result independent of the chunking
    return np.concatenate([s.run(i, min(_CHUNK, n_tokens - i)) for i in range(0, n_tokens, _CHUNK)] or
                          [np.empty((0, params.top_k), dtype=np.int32)])


class _Sampler:
    """The tables of one popularity and rule. Rows of the passes are (token, group) pairs."""

    def __init__(self, p: np.ndarray, params: RoutingParams, key: np.uint64) -> None:
        self.p, self.params, self.key = p, params, key
        self.groups = params.n_group if params.group_limited else 1
        self.size = p.size // self.groups
        self.cum = np.concatenate([[0.0], np.cumsum(p)])  # [E+1]
        self.mass = p.reshape(self.groups, self.size).sum(axis=1)  # [groups]
        prob, alias = _alias_tables(p.reshape(self.groups, self.size))
        self.prob = prob.ravel()  # [E], indexed by expert id
        self.alias = (alias + np.arange(self.groups)[:, None] * self.size).ravel()  # expert ids
        two = params.group_limited and params.group_score == "sum_top2" and self.size >= 2
        self.depth = 2 if two else 1
        tg = params.topk_group if params.group_limited else 1
        self.kept = min(tg, self.groups)
        self.slots = self.groups * self.depth + params.top_k  # value draws per token (counter layout)

    def run(self, t0: int, n: int) -> np.ndarray:
        """Tokens t0..t0+n-1. Phase 1: each group's top ``depth`` values; 2: keep the best groups; 3: merge."""
        g, d = self.groups, self.depth
        tok = np.repeat(np.arange(t0, t0 + n, dtype=np.int64), g)
        grp = np.tile(np.arange(g), n)  # rows: (token, group)
        rem = self.mass[grp]
        vals, ids = [], []
        last = np.full(n * g, np.inf)
        for q in range(d):
            drawn = np.stack(ids, axis=1) if ids else np.empty((n * g, 0), dtype=np.int64)
            v, e = self._next(tok, grp * d + q, grp, rem, last, drawn, np.ones(n * g, dtype=bool))
            rem = rem - self.p[e]
            vals.append(v)
            ids.append(e)
            last = v
        keep = self._keep_groups([v.reshape(n, g) for v in vals])  # [n, kept]
        flat = (np.arange(n)[:, None] * g + keep).ravel()  # (token, kept group) rows into phase-1 arrays
        excl = np.full((flat.size, self.params.top_k + d), -1, dtype=np.int64)
        for j in range(d):
            excl[:, j] = ids[j][flat]
        state = _MergeState(keep.ravel(), vals[0][flat], ids[0][flat],
                            vals[1][flat] if d == 2 else None, ids[1][flat] if d == 2 else None,
                            rem[flat], excl, d)
        return self._merge(state, t0, n)

    def _keep_groups(self, vals: list[np.ndarray]) -> np.ndarray:
        """Group ids [n, kept] by descending group score, ties to the lower id (all groups when not limited)."""
        n, g = vals[0].shape
        if self.kept >= g:
            return np.broadcast_to(np.arange(g), (n, g))
        score = np.zeros((n, g))
        for v in vals:
            score = score + (v / (1.0 + v) if self.params.scoring_func == "sigmoid" else v)  # sigmoid(u), r = e^u
        return np.argsort(-score, axis=1, kind="stable")[:, :self.kept]

    def _merge(self, st: _MergeState, t0: int, n: int) -> np.ndarray:
        """Emit the k largest values across each token's kept groups (rows token * kept + position)."""
        k, tg = self.params.top_k, self.kept
        out = np.empty((n, k), dtype=np.int64)
        base = np.arange(n) * tg
        for j in range(k):
            r = base + np.argmax(st.head_v.reshape(n, tg), axis=1)
            out[:, j] = st.head_e[r]
            if j == k - 1:
                break
            emitted = st.head_v[r]
            b = st.has_buf[r]
            rb = r[b]
            st.head_v[rb], st.head_e[rb], st.has_buf[rb] = st.buf_v[rb], st.buf_e[rb], False
            rg = r[~b]
            if rg.size:
                avail = st.used[rg] < self.size
                slot = np.full(rg.size, self.groups * self.depth + j)
                v, e = self._next(t0 + rg // tg, slot, st.group[rg], st.rem[rg], emitted[~b], st.excl[rg], avail)
                st.head_v[rg], st.head_e[rg] = v, e
                ra = rg[avail]
                st.excl[ra, st.used[ra]] = e[avail]
                st.used[ra] += 1
                st.rem[ra] -= self.p[e[avail]]
        return out.astype(np.int32)

    def _ctr(self, tok: np.ndarray, slot: np.ndarray, sub: int) -> np.ndarray:
        return cr.counter(tok, slot, sub, self.slots)

    def _next(self, tok, slot, grp, rem, last, excl, avail) -> tuple[np.ndarray, np.ndarray]:
        """Next largest value [M] below ``last`` and its expert, among the group's experts not in excl, for
        rows (token ``tok``, draw ``slot``). Rows where ``avail`` is False (every expert of the group
        drawn) get value -1 and expert -1."""
        x = cr.exponential(self.key, self._ctr(tok, slot, cr.SUB_EXP))
        rem = np.maximum(rem, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(avail, rem / (rem / last + x), -1.0)  # rem/inf = 0 on the first draw
        e = np.full(rem.size, -1, dtype=np.int64)
        if avail.all():
            e[:] = self._draw(tok, slot, grp, rem, excl)
        elif avail.any():
            e[avail] = self._draw(tok[avail], slot[avail], grp[avail], rem[avail], excl[avail])
        return v, e

    def _draw(self, tok, slot, grp, rem, excl) -> np.ndarray:
        """An expert of group ``grp`` ∝ p, not in ``excl`` [M, J] (-1 = empty): alias-table draws from the
        whole group, redrawn while excluded (rejection keeps the law ∝ p on the rest); rows still excluded
        after a few rounds (a hot expert already drawn) use exact inversion on the remaining mass."""
        e = self._alias_draw(tok, slot, grp, cr.SUB_ALIAS)
        if excl.shape[1] == 0:
            return e
        todo = np.flatnonzero((excl == e[:, None]).any(axis=1))
        for r in range(cr.REDRAWS):
            if todo.size == 0:
                return e
            e[todo] = self._alias_draw(tok[todo], slot[todo], grp[todo], cr.SUB_ALIAS + 1 + r)
            todo = todo[(excl[todo] == e[todo, None]).any(axis=1)]
        if todo.size:
            e[todo] = self._invert(tok[todo], slot[todo], grp[todo], rem[todo], excl[todo])
        return e

    def _alias_draw(self, tok, slot, grp, sub: int) -> np.ndarray:
        """Walker's alias method, one uniform per draw: its integer part picks a column, its fraction
        accepts the column or takes its alias."""
        u = cr.uniform(self.key, self._ctr(tok, slot, sub)) * self.size
        col = np.minimum(u.astype(np.int64), self.size - 1)
        idx = grp * self.size + col
        return np.where(u - col < self.prob[idx], idx, self.alias[idx])

    def _invert(self, tok, slot, grp, rem, excl) -> np.ndarray:
        """Inversion on the group's cumulative mass, stepping over each excluded expert's interval in
        ascending id order. Rounding at an interval edge can still land on an excluded expert: redraw."""
        lo = grp * self.size
        e = np.empty(grp.size, dtype=np.int64)
        todo = np.arange(grp.size)
        ex = np.sort(np.where(excl >= 0, excl, np.iinfo(np.int64).max), axis=1)
        for a in range(cr.INVERT_TRIES):
            x = self.cum[lo[todo]] + cr.uniform(self.key, self._ctr(tok[todo], slot[todo], cr.SUB_INVERT + a)) \
                * rem[todo]
            for c in ex[todo].T:
                hit = c < self.p.size
                ci = np.where(hit, c, 0)
                x = np.where(hit & (x >= self.cum[ci]), x + self.p[ci], x)
            got = np.clip(np.searchsorted(self.cum, x, side="right") - 1, lo[todo], lo[todo] + self.size - 1)
            e[todo] = got
            todo = todo[(ex[todo] == got[:, None]).any(axis=1)]
            if todo.size == 0:
                return e
        raise RuntimeError("top-down sampler: could not draw outside the excluded experts")


class _MergeState:
    """Per (token, kept group) row: the group's largest value not yet emitted (head), one pre-drawn value
    after it (buffer, from the sum_top2 group score), the mass not yet drawn, and the experts drawn."""

    def __init__(self, group, head_v, head_e, buf_v, buf_e, rem, excl, used: int) -> None:
        self.group, self.head_v, self.head_e, self.rem, self.excl = group, head_v, head_e, rem, excl
        self.has_buf = np.full(group.size, buf_v is not None)
        self.buf_v = buf_v if buf_v is not None else head_v
        self.buf_e = buf_e if buf_e is not None else head_e
        self.used = np.full(group.size, used)


def _alias_tables(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables per row of p [G, S]: acceptance probability and alias column, [G, S] each
    (compiled when numba is installed: the same stacks in the same order, the same floats)."""
    if topdown_jit.available():
        p = np.ascontiguousarray(p, dtype=np.float64)
        return topdown_jit.alias_tables(p, np.array([row.sum() for row in p]))  # numpy's pairwise sums
    g, size = p.shape
    prob = np.ones((g, size))
    alias = np.tile(np.arange(size), (g, 1))
    for row in range(g):
        scaled = p[row] * size / p[row].sum()
        small = [i for i in range(size) if scaled[i] < 1.0]
        large = [i for i in range(size) if scaled[i] >= 1.0]
        while small and large:
            s, lg = small.pop(), large.pop()
            prob[row, s], alias[row, s] = scaled[s], lg
            scaled[lg] -= 1.0 - scaled[s]
            (small if scaled[lg] < 1.0 else large).append(lg)
    return prob, alias
