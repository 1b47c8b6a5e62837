"""How long building a set of iteration surfaces will take, estimated before any point runs: what ``moesim
serve`` refuses past SERVE_MAX_S (``sim.size_guard: false`` runs it anyway) and ``moesim plan`` weighs against
``limits.max_hours`` (moesim/plan/guard.py). Pure.

A surface is built one token row at a time (its contexts share the row's MoE layers). Per grid point the
estimate is POINT_S of fixed cost (scenario, routing draw, summary) plus a third of ``moesim run``'s own time
estimate (``iteration/sizing.estimate``, which counts every flow and routed token of a lone run). Fitted by
eye on the 110 points of plans/aic-compare-v3-h100.yaml on the 2-core reference machine (a decode point
0.2 s, a prefill point of 181 tokens 1.1 s and of 8,192 tokens 2.7 s, against estimates of 0.26, 0.35 and
3.5 s): good to a factor of about 3, low by up to 10 on 8-GPU instances with 8,192-token prefill points
(3.5 s estimated, 19-35 s measured): enough to stop a build that would take a day, not to budget one.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.serve.surface import point_scenario

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
    ctx = max(g.contexts)
    return sum(len(g.contexts) * (POINT_S + DES_SHARE * estimate(point_scenario(g.scenario, g.mode, t, ctx)).seconds)
               for t in g.tokens)


def workers_of(executor) -> int:
    """How many points an executor runs at once (its ``jobs``; 1 when it does not say)."""
    return max(1, int(getattr(executor, "jobs", 1) or 1))


def wave_cost(grids: list, cached, workers: int) -> WaveCost:
    """The cost of the grids ``cached(grid)`` says are not in the surface cache, spread over ``workers``."""
    todo = [g for g in grids if not cached(g)]
    secs = sum(grid_seconds(g) for g in todo)
    return WaveCost(secs / max(1, workers), sum(len(g.tokens) * len(g.contexts) for g in todo), len(todo))


def hours(seconds: float) -> str:
    """'40 min', '3.2 h'."""
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


SERVE_MAX_S = 2 * 3600.0  # moesim serve: a surface build estimated longer than this is refused (size guard)


def guard_surfaces(s, grids: list, cached, workers: int) -> None:
    """ScenarioError where the surfaces ``serve`` must build would take longer than SERVE_MAX_S (estimated)
    and ``sim.size_guard`` is on."""
    if not s.sim.size_guard:
        return
    cost = wave_cost(grids, cached, workers)
    if cost.seconds > SERVE_MAX_S:
        from moesim.util.errors import ScenarioError
        raise ScenarioError(f"the iteration surfaces need about {hours(cost.seconds)} of simulation ({cost.points:,} "
                            f"grid points of {cost.grids} surfaces on {workers} workers, estimated), over "
                            f"{hours(SERVE_MAX_S)}", path="serving.surface",
                            fix="fewer grid points (serving.surface.prefill_tokens, decode_batch, contexts: unset "
                                "gives grids bounded by the request lengths), or --set sim.size_guard=false")
