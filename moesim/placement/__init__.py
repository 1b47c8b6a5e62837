"""Expert placement: pure functions from expected loads to a :class:`Placement`, their registry
(``PLACEMENTS``: name -> ``Strategy``), and the planning window that produces the loads (``window``)."""

from moesim.placement import builtin as _builtin  # noqa: F401 (registers the built-in strategies)
from moesim.placement.base import Placement
from moesim.placement.registry import PLACEMENTS, Strategy

__all__ = ["PLACEMENTS", "Placement", "Strategy"]
