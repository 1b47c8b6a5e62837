"""Before each wave of a plan's search: about how long its missing surface points will take, and a stop where
that is past the plan's ``limits.max_hours``. Pure; the planner raises or stops on what it returns.

A surface is built one token row at a time (its contexts share the row's MoE layers). Per grid point the
estimate is POINT_S of fixed cost (scenario, routing draw, summary) plus a third of ``moesim run``'s own time
estimate (``iteration/sizing.estimate``, which counts every flow and routed token of a lone run). Fitted by
eye on the 110 points of plans/aic-compare-v3-h100.yaml on the 2-core reference machine (a decode point
0.2 s, a prefill point of 181 tokens 1.1 s and of 8,192 tokens 2.7 s, against estimates of 0.26, 0.35 and
3.5 s): good to a factor of about 3, enough to stop a search that would take a day, not to budget one.
"""

from __future__ import annotations

from dataclasses import dataclass

POINT_S = 0.2  # seconds of a grid point besides its DES (fitted, see the module docstring)
DES_SHARE = 1 / 3  # a point's DES against a lone run's estimate (routing drawn once a row, records unused)


@dataclass(frozen=True)
class WaveCost:
    """seconds: wall time on ``workers`` workers; points: grid points to build; grids: surfaces to build."""

    seconds: float
    points: int
    grids: int


def grid_seconds(g) -> float:
    """CPU seconds of every point of one ``serve.surface.Grid`` (each token row estimated at its token count
    and the grid's longest context)."""
    from moesim.iteration.sizing import estimate
    from moesim.serve.surface import point_scenario
    ctx = max(g.contexts)
    return sum(len(g.contexts) * (POINT_S + DES_SHARE * estimate(point_scenario(g.scenario, g.mode, t, ctx)).seconds)
               for t in g.tokens)


def wave_cost(grids: list, cached, workers: int) -> WaveCost:
    """The cost of the grids ``cached(grid)`` says are not in the surface cache, spread over ``workers``."""
    todo = [g for g in grids if not cached(g)]
    secs = sum(grid_seconds(g) for g in todo)
    return WaveCost(secs / max(1, workers), sum(len(g.tokens) * len(g.contexts) for g in todo), len(todo))


def hours(seconds: float) -> str:
    """'40 min', '3.2 h'."""
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


CHECK_AFTER_S = 20.0  # the measured pace is trusted once a wave has run this long and 2 points per worker


def overrun(done: int, total: int, elapsed_s: float, left_s: float, workers: int) -> float | None:
    """Seconds the wave will take at the pace measured so far, where that is past ``left_s`` (the estimate
    before the wave can be low by a factor of 10 on small instances with long prompts); None otherwise."""
    if elapsed_s < CHECK_AFTER_S or done < 2 * workers or done >= total:
        return None
    projected = elapsed_s / done * total
    return projected if projected > left_s else None
