"""A plan's size guard: before a wave of the search builds its surfaces, their time is estimated
(moesim/serve/size.py) and, while they build, the measured pace is projected; past what ``limits.max_hours``
leaves, the planner refuses the first wave or ends the search. Pure."""

from __future__ import annotations

from moesim.serve.size import WaveCost, hours, wave_cost

__all__ = ["CHECK_AFTER_S", "WaveCost", "hours", "overrun", "wave_cost"]

CHECK_AFTER_S = 20.0  # the measured pace is trusted once a wave has run this long and 2 points per worker


def overrun(done: int, total: int, elapsed_s: float, left_s: float, workers: int) -> float | None:
    """Seconds the wave will take at the pace measured so far, where that is past ``left_s`` (the estimate
    before the wave can be low by a factor of 10 on small instances with long prompts); None otherwise."""
    if elapsed_s < CHECK_AFTER_S or done < 2 * workers or done >= total:
        return None
    projected = elapsed_s / done * total
    return projected if projected > left_s else None
