"""Iteration-time surfaces: the iteration DES run at grid points (tokens per GPU × context length) and
interpolated bilinearly, so a serving run asks for thousands of iterations without simulating each.

Bilinear in linear coordinates is exact where the time is affine in tokens (prefill, the GEMM-bound side
of decode) and in the product tokens × context (decode attention reading the KV cache), which is why the
grid is spaced geometrically but interpolated linearly. The held-out midpoints of the grid are run too and
their error is reported (``holdout``). Surfaces are cached on disk, keyed by everything that changes them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moesim.config.schema import Scenario
from moesim.serve.grid_points import midpoints
from moesim.serve.surface_cache import partial_path, partial_text, read_partial, surface_path
from moesim.serve.surface_cache import read as read_cache
from moesim.serve.surface_cache import text as cache_text
from moesim.util.files import check_writable
from moesim.util.fingerprint import cache_dir, code_fingerprint


@dataclass(frozen=True)
class Surface:
    """time_s[T, C] and imbalance[T, C] (GPU load max/mean) of one iteration at tokens[T] per GPU and
    contexts[C]; ``holdout`` rows are (tokens, context, direct_s, interpolated_s); group_s[T, C] the exposed
    seconds of the stages a request group sets (``GROUP_STAGES``: the attention core), which a mixed batch
    takes per group (``mixed_time``)."""

    mode: str
    tokens: tuple[int, ...]
    contexts: tuple[int, ...]
    time_s: tuple[tuple[float, ...], ...]
    imbalance: tuple[tuple[float, ...], ...]
    holdout: tuple[tuple[int, int, float, float], ...] = ()
    group_s: tuple[tuple[float, ...], ...] = ()
    unit: int = 1  # the token axis counts tokens of ``unit`` GPUs (an attention TP group's batch); 1: per GPU

    def __call__(self, tokens: float, context: float) -> float:
        """Interpolated iteration seconds at ``tokens`` per GPU (a fraction where a TP group holds fewer than
        one per GPU). Outside the grid: the context is clamped; tokens below the first point cost the first
        point, above the last they extrapolate along the last segment."""
        ti, tw = _bracket(self.tokens, tokens * self.unit, extrapolate_high=True)
        ci, cw = _bracket(self.contexts, context, extrapolate_high=False)
        return _blend(self.time_s, ti, tw, ci, cw)

    def group(self, tokens: float, context: float) -> float:
        """Interpolated ``GROUP_STAGES`` seconds (0 without the table), extrapolated as ``__call__``."""
        if not self.group_s:
            return 0.0
        ti, tw = _bracket(self.tokens, tokens * self.unit, extrapolate_high=True)
        ci, cw = _bracket(self.contexts, context, extrapolate_high=False)
        return _blend(self.group_s, ti, tw, ci, cw)

    def imbalance_at(self, tokens: float, context: float) -> float:
        ti, tw = _bracket(self.tokens, tokens * self.unit, extrapolate_high=False)
        ci, cw = _bracket(self.contexts, context, extrapolate_high=False)
        return _blend(self.imbalance, ti, tw, ci, cw)

    def times(self, tokens: Any, contexts: Any) -> np.ndarray:
        """``__call__`` over arrays (broadcast; ``tokens`` may be one number): the same floats, a vector at a
        time."""
        return self._many("time_s", tokens, contexts, extrapolate_high=True)

    def imbalances(self, tokens: Any, contexts: Any) -> np.ndarray:
        """``imbalance_at`` over arrays (broadcast), the same floats."""
        return self._many("imbalance", tokens, contexts, extrapolate_high=False)

    def _many(self, table: str, tokens: Any, contexts: Any, extrapolate_high: bool) -> np.ndarray:
        c = np.asarray(contexts, dtype=float)
        ci, cw = _bracket_many(self._grid("contexts"), c, extrapolate_high=False)
        if np.ndim(tokens) == 0:  # one token count (a decode span): its bracket as __call__ finds it
            ti, tw = _bracket(self.tokens, tokens * self.unit, extrapolate_high)
        else:
            t = np.asarray(tokens, dtype=float) * self.unit
            ti, tw = _bracket_many(self._grid("tokens"), t, extrapolate_high)
        return _blend_many(self._grid(table), ti, tw, ci, cw)

    def _grid(self, field: str) -> np.ndarray:
        """The field (``tokens``, ``contexts``, ``time_s``, ``imbalance``) as a float array, made once."""
        cache = self.__dict__.setdefault("_arrays", {})
        if field not in cache:
            cache[field] = np.asarray(getattr(self, field), dtype=float)
        return cache[field]

    def holdout_error(self) -> dict[str, float] | None:
        """Max and mean relative error of the interpolation on the held-out points (None without them)."""
        if not self.holdout:
            return None
        err = [abs(i - d) / d for _, _, d, i in self.holdout]
        return {"points": len(err), "max": max(err), "mean": sum(err) / len(err)}

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "tokens": list(self.tokens), "contexts": list(self.contexts),
                "time_s": [list(r) for r in self.time_s], "imbalance": [list(r) for r in self.imbalance],
                "holdout": [list(h) for h in self.holdout], "holdout_error": self.holdout_error(),
                "group_s": [list(r) for r in self.group_s], "unit": self.unit}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Surface:
        return cls(d["mode"], tuple(d["tokens"]), tuple(d["contexts"]), tuple(tuple(r) for r in d["time_s"]),
                   tuple(tuple(r) for r in d["imbalance"]), tuple(tuple(h) for h in d["holdout"]),
                   tuple(tuple(r) for r in d.get("group_s", ())), int(d.get("unit", 1)))


def _bracket(grid: tuple[int, ...], x: float, extrapolate_high: bool) -> tuple[int, float]:
    """(i, w): x sits between grid[i] and grid[i+1] at weight w (w may exceed 1 when extrapolating)."""
    if len(grid) == 1 or x <= grid[0]:
        return 0, 0.0
    if x >= grid[-1] and not extrapolate_high:
        return len(grid) - 2, 1.0
    i = min(bisect.bisect_right(grid, x) - 1, len(grid) - 2)
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


def _blend(z: tuple[tuple[float, ...], ...], ti: int, tw: float, ci: int, cw: float) -> float:
    """Row ``ti`` (and ``ti + 1`` at weight ``tw``) of ``z``, each at column ``ci`` (and ``ci + 1`` at weight
    ``cw``). Written out without helpers: the serving DES asks it for every iteration."""
    last = len(z) - 1
    r = z[min(ti, last)]
    a = r[ci] if len(r) == 1 else r[ci] * (1 - cw) + r[ci + 1] * cw
    if not last:
        return a
    r = z[min(ti + 1, last)]
    return a * (1 - tw) + (r[ci] if len(r) == 1 else r[ci] * (1 - cw) + r[ci + 1] * cw) * tw


def _bracket_many(g: np.ndarray, x: np.ndarray, extrapolate_high: bool) -> tuple[np.ndarray, np.ndarray]:
    """``_bracket`` of every element of ``x`` on grid ``g`` (floats): index and weight arrays, the same floats
    element by element."""
    if len(g) == 1:
        return np.zeros(x.shape, dtype=np.int64), np.zeros(x.shape)
    i = np.minimum(np.maximum(np.searchsorted(g, x, side="right") - 1, 0), len(g) - 2)
    w = (x - g[i]) / (g[i + 1] - g[i])
    if not extrapolate_high:
        high = x >= g[-1]
        if high.any():
            i, w = np.where(high, len(g) - 2, i), np.where(high, 1.0, w)
    low = x <= g[0]
    if low.any():
        i, w = np.where(low, 0, i), np.where(low, 0.0, w)
    return i, w


def _blend_many(zz: np.ndarray, ti: Any, tw: Any, ci: np.ndarray, cw: np.ndarray) -> np.ndarray:
    """``_blend`` element by element (the same operations, so the same floats); ``ti``, ``tw`` arrays or
    one index and weight."""
    rows, cols = zz.shape

    def row(i: Any) -> np.ndarray:
        i = np.minimum(i, rows - 1)
        return zz[i, ci] if cols == 1 else zz[i, ci] * (1 - cw) + zz[i, ci + 1] * cw

    return row(ti) if rows == 1 else row(ti) * (1 - tw) + row(ti + 1) * tw


def token_unit(s: Scenario, mode: str) -> int:
    """GPUs a surface's token axis counts over: an attention TP group's for decode, whose batch can be fewer
    tokens than the group has GPUs (``workload.group_tokens``); 1 (tokens per GPU) otherwise."""
    w = s.workload
    grouped = mode == "decode" and w.attention_tp > 1 and w.moe_in_tp_group(s.cluster.num_gpus, mode)
    return w.attention_tp if grouped and w.micro_batches == 1 else 1


def point_scenario(s: Scenario, mode: str, tokens: int, context: int) -> Scenario:
    """The instance scenario at one grid point. Two micro-batches need an even token count; a single
    token runs as one micro-batch. Where ``token_unit`` is above 1, ``tokens`` are each TP group's."""
    wl = s.workload
    unit = token_unit(s, mode)
    if unit > 1:
        return s.model_copy(update={"workload": wl.model_copy(update={
            "mode": mode, "tokens_per_gpu": -(-tokens // unit), "group_tokens": tokens,
            "context_tokens": max(1, int(context))})})
    mb = wl.micro_batches if tokens >= 2 else 1
    t = tokens + (tokens % 2 if mb == 2 else 0)
    return s.model_copy(update={"workload": wl.model_copy(update={
        "mode": mode, "tokens_per_gpu": t, "context_tokens": max(1, int(context)), "micro_batches": mb})})


# what a request group sets in a mixed batch (mixed_time): the attention core, a kernel per group over its own
# context. The output head is left to the prefill surface: it reads its weights once for the whole batch, so
# its cost barely moves with the few more rows decode tokens add (composing it per group double-counted that
# read by 7% on DeepSeek-V2-Lite, tests/test_mixed_engines.py)
GROUP_STAGES = ("attention_core",)


def mixed_time(prefill: Surface, decode: Surface, tokens: float, context: float, decode_tokens: float,
               decode_context: float) -> float:
    """Seconds of a mixed iteration of ``tokens`` per GPU, ``decode_tokens`` of them decode tokens over
    ``decode_context``, the rest prompt tokens at (causal-equivalent) ``context``, composed from the two
    surfaces as Vidur composes operators: the prefill surface at the summed tokens (MoE, dense layers,
    projections and head on every token), less the decode tokens' share of its attention core, plus the
    decode surface's attention core for the decode tokens. Direct iteration runs of mixed batches check it
    (``serve.mixed``)."""
    t = prefill(tokens, context)
    if decode_tokens <= 0:
        return t
    share = decode_tokens / tokens
    return t - share * prefill.group(tokens, context) + decode.group(decode_tokens, decode_context)


def _run_point(task: tuple[Scenario, str, int, int], reuse: Any = None) -> tuple[float, float, float]:
    """Worker: one iteration DES at a grid point → (iteration seconds, GPU load max/mean, GROUP_STAGES'
    exposed seconds). ``reuse`` (``iteration.reuse.RouteReuse``): MoE layers shared with the other
    contexts of the same token row."""
    from moesim.iteration.run import run_scenario
    s, mode, tokens, context = task
    if s.offload is not None:  # experts across memory tiers: a decode step's (or a prefill pass's) time
        from moesim.offload import run_offload
        doc = run_offload(point_scenario(s, mode, tokens, context), kv=False).doc
        return (doc["time_per_token_s"] if mode == "decode" else doc["simulated_s"], doc["gpu_load_max_over_mean"],
                0.0)
    sm = run_scenario(point_scenario(s, mode, tokens, context), reuse=reuse).summary
    group = sum(sm.totals.stages.get(n, 0.0) for n in GROUP_STAGES)
    return sm.iteration_time_s, float(sm.totals.gpu_load_max_over_mean), float(group)


REFINE_ABOVE = 0.02  # a held-out point interpolated worse than this becomes a grid row
REFINE_ROUNDS = 8


@dataclass(frozen=True)
class Grid:
    """What to build for one instance scenario: mode, tokens and contexts, and whether to hold out points."""

    key: str  # role/mode, for progress and outputs
    scenario: Scenario
    mode: str
    tokens: list[int]
    contexts: list[int]
    holdout: bool

    def cache_key(self) -> str:
        prof = self.scenario.cluster.gpu_profile
        stamp = ""
        if prof and Path(prof).is_file():
            st = Path(prof).stat()
            stamp = f"{st.st_mtime_ns}:{st.st_size}"
        blob = json.dumps({"code": code_fingerprint(), "s": iteration_identity(self.scenario), "m": self.mode,
                           "t": self.tokens, "c": self.contexts, "h": self.holdout, "p": stamp,
                           "r": [REFINE_ABOVE, REFINE_ROUNDS]}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def iteration_identity(s: Scenario) -> dict[str, Any]:
    """What of ``s`` decides one iteration's time, as plain data: everything but its ``name`` and the parts of
    ``serving`` the iteration DES never reads (arrivals, load, lengths, SLOs, overheads, scheduler: a grid
    point fixes tokens and context itself). The deployment stays: the checks read it. Two scenarios that
    differ only in what is left out share their surfaces."""
    doc = s.model_dump(mode="json")
    doc.pop("name", None)
    if doc.get("serving") is not None:
        doc["serving"] = {"deployment": doc["serving"]["deployment"]}
    return doc


def holdout_points(tokens: list[int], contexts: list[int]) -> list[tuple[int, int]]:
    """One held-out point per token segment: its geometric midpoint, at context midpoints taken in turn
    (the grid's contexts when there is a single one)."""
    mc = midpoints(contexts) or list(contexts)
    return [(t, mc[i % len(mc)]) for i, t in enumerate(midpoints(tokens))]


class _Build:
    """One grid being built: its points so far, and the held-out points not (yet) in the grid."""

    def __init__(self, g: Grid, path: Path, key: str) -> None:
        self.g, self.path, self.key, self.tokens, self.res = g, path, key, list(g.tokens), {}
        self.hold = holdout_points(self.tokens, g.contexts) if g.holdout else []

    def missing(self) -> list[tuple[int, int]]:
        pts = [(t, c) for t in self.tokens for c in self.g.contexts] + self.hold
        return [p for p in pts if p not in self.res]

    def refine(self) -> bool:
        """Held-out points interpolated worse than REFINE_ABOVE join the grid as whole token rows; the new
        segments get held-out midpoints of their own. True when something changed."""
        surf = self.surface()
        res = self.res
        bad = [t for t, c in self.hold if abs(surf(t / surf.unit, c) - res[(t, c)][0]) > REFINE_ABOVE * res[(t, c)][0]]
        if not bad:
            return False
        self.tokens = sorted(set(self.tokens) | set(bad))
        fresh = holdout_points(self.tokens, self.g.contexts)
        self.hold = [p for p in fresh if p[0] not in self.tokens]
        return True

    def surface(self) -> Surface:
        cs = self.g.contexts
        time_s = tuple(tuple(self.res[(t, c)][0] for c in cs) for t in self.tokens)
        imb = tuple(tuple(self.res[(t, c)][1] for c in cs) for t in self.tokens)
        group = tuple(tuple(self.res[(t, c)][2] for c in cs) for t in self.tokens)
        unit = token_unit(self.g.scenario, self.g.mode)
        base = Surface(self.g.mode, tuple(self.tokens), tuple(cs), time_s, imb, unit=unit)
        hold = tuple((t, c, self.res[(t, c)][0], base(t / unit, c)) for t, c in self.hold if (t, c) in self.res)
        return Surface(self.g.mode, base.tokens, base.contexts, time_s, imb, hold, group, unit)


def build_surfaces(grids: list[Grid], executor: Any, use_cache: bool = True,
                   progress: Callable[[int, int], None] | None = None,
                   store: Callable[[Path, str], None] | None = None) -> dict[str, Surface]:
    """Build (or load from the cache) one surface per grid, running every missing point through
    ``executor`` (one task per point, all grids at once), then refining where held-out points miss by
    more than REFINE_ABOVE (at most REFINE_ROUNDS times). ``store(path, text)`` writes a cache file."""
    out: dict[str, Surface] = {}
    todo: list[_Build] = []
    if use_cache:  # before any work: a cache that cannot be written is said now, not after the surfaces
        check_writable(cache_dir() / "surfaces", "the surface cache",
                       "set MOESIM_CACHE to a writable folder, or run with --no-cache")
    for g in grids:
        key = g.cache_key()
        path = surface_path(key)
        if use_cache and path.is_file():
            cached = load_cached(path, key)
            if cached is not None:
                out[g.key] = cached
                continue
        todo.append(_Build(g, path, key))
        if use_cache:  # points that finished before an interrupted build
            todo[-1].res.update(read_partial(path, key))
    try:
        _run_builds(todo, executor, progress)
    except BaseException:  # Ctrl-C, SIGTERM, a stop: keep the points that finished for the next build
        for b in todo:
            if use_cache and store and b.res:
                store(partial_path(b.path), partial_text(b.res, b.key))
        raise
    for b in todo:
        out[b.g.key] = surf = b.surface()
        if use_cache and store:
            store(b.path, cache_text(surf.to_dict(), b.key))
            partial_path(b.path).unlink(missing_ok=True)
    return out


def _run_builds(todo: list[_Build], executor: Any, progress: Callable[[int, int], None] | None) -> None:
    """Run every missing point of ``todo`` (one task per token row), then refine, REFINE_ROUNDS at most."""
    done, total = 0, sum(len(b.missing()) for b in todo)
    for round_ in range(REFINE_ROUNDS + 1):
        # one task per token row: its contexts share the row's routing, placement and traffic
        tasks = [(bi, t, cs, b.g.scenario, b.g.mode) for bi, b in enumerate(todo) for t, cs in _rows(b.missing())]
        if not tasks:
            break
        tasks.sort(key=lambda task: -task[1])  # the longest first: workers finish together
        total = max(total, done + sum(len(task[2]) for task in tasks))
        if progress:
            progress(done, total)
        for task, res in executor.run(_task, tasks):
            for c, r in zip(task[2], res):
                todo[task[0]].res[(task[1], c)] = r
            done += len(res)
            if progress:
                progress(done, total)
        if round_ < REFINE_ROUNDS:
            for b in todo:
                b.refine()


def load_cached(path: Path, key: str) -> Surface | None:
    """The cached surface at ``path``: this grid's, intact (surface_cache) and sane, else None (rebuilt)."""
    try:
        body = read_cache(path, key)
        surf = Surface.from_dict(body) if body is not None else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if surf is None:
        return None
    times = [t for row in surf.time_s for t in row]
    ok = (all(math.isfinite(t) and t > 0 for t in times) and len(surf.time_s) == len(surf.tokens)
          and all(len(r) == len(surf.contexts) for r in surf.time_s))
    return surf if ok else None


def _rows(points: list[tuple[int, int]]) -> list[tuple[int, tuple[int, ...]]]:
    """(tokens, contexts) per token row of ``points`` [(tokens, context)], in first-seen order."""
    rows: dict[int, list[int]] = {}
    for t, c in points:
        rows.setdefault(t, []).append(c)
    return [(t, tuple(cs)) for t, cs in rows.items()]


def _task(item: tuple[int, int, tuple[int, ...], Scenario, str]) -> list[tuple[float, float, float]]:
    """Worker: one token row's points (``_run_point`` per context), their MoE layers built once."""
    from moesim.iteration.reuse import RouteReuse
    _, tokens, contexts, s, mode = item
    reuse = RouteReuse(layers=True)
    return [_run_point((s, mode, tokens, c), reuse) for c in contexts]
