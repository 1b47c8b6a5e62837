"""Expert placement strategies: pure functions from statistics to a :class:`Placement`, and their registry."""

from moesim.placement.base import Placement
from moesim.placement.contiguous import contiguous
from moesim.placement.strategies import (
    affinity,
    eplb,
    greedy,
    optimal,
    random_placement,
    round_robin,
    time_aware,
)


def _eplb_hier(load, gpus, redundant=0, **kw):
    return eplb(load, gpus, redundant, **{**kw, "policy": "hierarchical"})


def _eplb_global(load, gpus, redundant=0, **kw):
    return eplb(load, gpus, redundant, **{**kw, "policy": "global"})


PLACEMENTS = {"contiguous": contiguous, "round_robin": round_robin, "random": random_placement, "greedy": greedy,
              "eplb": eplb, "eplb_hierarchical": _eplb_hier, "eplb_global": _eplb_global, "optimal": optimal,
              "affinity": affinity, "time_aware": time_aware}

__all__ = ["PLACEMENTS", "Placement"]
