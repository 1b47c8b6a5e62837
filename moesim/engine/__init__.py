"""The SimPy engine: GPU processes, all-to-all phases and the shared network. No I/O, no plotting."""

from moesim.engine.records import LayerWork, SimRecords
from moesim.engine.sim import simulate, simulate_overlap

__all__ = ["LayerWork", "SimRecords", "simulate", "simulate_overlap"]
