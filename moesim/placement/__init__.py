"""Expert placement strategies: pure functions from statistics to a :class:`Placement`, and their registry."""

from moesim.placement.base import Placement
from moesim.placement.contiguous import contiguous

PLACEMENTS = {"contiguous": contiguous}

__all__ = ["PLACEMENTS", "Placement"]
