"""Stopping a serving run once it has missed its SLO for certain (the planner's bisection trials): a run
meets the SLO when the p-th percentile of TTFT and of TPOT are within their limits, and part-way through a
run some requests are already known to miss:

- TTFT: a first token came later than the limit, or a request still without one arrived more than the
  limit ago (its TTFT can only be longer);
- TPOT: (t_done - t_first) / (output - 1) of a finished request, and (now - t_first) / (output - 1) of one
  still decoding, a lower bound of what it will be.

NumPy's percentile (linear) of n values is at least the sorted value at floor((n - 1) p / 100); once more
than n minus that many values are over the limit, that value is too, and the run misses whatever happens
next. The check uses one index lower (floating-point safety), so it only ever stops a run that would miss.
No I/O; it reads the DES's state and changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moesim.serve.state import State


class SloMissed(Exception):
    """Raised inside the DES when the run has missed its SLO for certain (caught by ``ServeSim.run``)."""


@dataclass(frozen=True)
class SloGuard:
    """The SLO a run is checked against: limits in seconds and the percentile (50, 90, 95, 99)."""

    ttft_s: float
    tpot_s: float
    percentile: int

    def _enough(self, n: int) -> int:
        """Values over the limit that put the percentile of ``n`` values over it."""
        lo = max(0, math.floor((n - 1) * self.percentile / 100) - 1)
        return n - lo

    def missed(self, s: State, now: float) -> bool:
        """Whether the run has missed the SLO whatever happens after ``now`` (seconds)."""
        n = len(s.arrival)
        with np.errstate(invalid="ignore"):
            waiting = np.isnan(s.t_first)
            late = (s.t_first - s.arrival > self.ttft_s) | (waiting & (s.arrival < now - self.ttft_s))
            if n and int(late.sum()) >= self._enough(n):
                return True
            multi = s.osl > 1
            m = int(multi.sum())
            if not m:
                return False
            last = np.where(np.isnan(s.t_done), now, s.t_done)
            slow = multi & ((last - s.t_first) / np.maximum(s.osl - 1, 1) > self.tpot_s)
            return int(slow.sum()) >= self._enough(m)
