"""The SimPy engine: an interpreter of stage programs over GPU resources and the shared network.
No I/O, no plotting."""

from moesim.engine.records import SimRecords
from moesim.engine.sim import simulate

__all__ = ["SimRecords", "simulate"]
