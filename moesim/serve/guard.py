"""Stopping a serving run once its SLO verdict is certain (the planner's bisection trials): a run meets
the SLO when the p-th percentile of TTFT and of TPOT are within their limits, and part-way through a run
some requests' figures are already known:

- TTFT: known once the first token has come; known to miss the limit when a request still without one
  arrived more than the limit ago (its TTFT can only be longer);
- TPOT: known once the request has finished; known to miss when (now - t_first) / (output - 1), a lower
  bound of what it will be, is over the limit.

NumPy's percentile (linear) of n sorted values lies between the values at floor((n - 1) p / 100) and the
next. Once more than n minus that index of values are over the limit, the percentile is too: the run
misses whatever happens next. Once at least that index + 2 values are within it, the percentile is too:
the run meets. Both counts keep one index of margin (floating-point safety), and values within 1e-12 of
the limit count as unknown, so a verdict is only ever given where the whole run would give it.
No I/O; it reads the DES's state and changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moesim.serve.state import State


class SloDecided(Exception):
    """Raised inside the DES once the run's verdict is certain (caught by ``ServeSim.run``)."""

    def __init__(self, met: bool) -> None:
        super().__init__(met)
        self.met = met


@dataclass(frozen=True)
class SloGuard:
    """The SLO a run is checked against: limits in seconds and the percentile (50, 90, 95, 99)."""

    ttft_s: float
    tpot_s: float
    percentile: int

    def _index(self, n: int) -> int:
        return math.floor((n - 1) * self.percentile / 100)

    def _enough(self, n: int) -> int:
        """Values over the limit that put the percentile of ``n`` values over it."""
        return n - max(0, self._index(n) - 1)

    def _within(self, n: int) -> int:
        """Values within the limit that keep the percentile of ``n`` values within it."""
        return min(n, self._index(n) + 3)

    def decided(self, s: State, now: float) -> bool | None:
        """The run's verdict if it is certain at ``now`` (seconds): False (misses), True (meets), else None."""
        n = len(s.arrival)
        if not n:
            return None
        with np.errstate(invalid="ignore"):
            ttft = s.t_first - s.arrival
            late = (ttft > self.ttft_s) | (np.isnan(s.t_first) & (s.arrival < now - self.ttft_s))
            if int(late.sum()) >= self._enough(n):
                return False
            multi = s.osl > 1
            m = int(multi.sum())
            tpot = (np.where(np.isnan(s.t_done), now, s.t_done) - s.t_first) / np.maximum(s.osl - 1, 1)
            if m and int((multi & (tpot > self.tpot_s)).sum()) >= self._enough(m):
                return False
            ttft_ok = int((ttft < self.ttft_s * (1 - 1e-12)).sum()) >= self._within(n)
            done = multi & ~np.isnan(s.t_done)
            tpot_ok = not m or int((done & (tpot < self.tpot_s * (1 - 1e-12))).sum()) >= self._within(m)
        return True if ttft_ok and tpot_ok else None
