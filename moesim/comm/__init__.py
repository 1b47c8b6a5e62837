"""Communication: the all-to-all algorithms (``ALGORITHMS``: flat, hierarchical, low_latency; one module each)
and the traffic they put on the topology (``traffic.layer_traffic``)."""

from moesim.comm import flat, hierarchical, low_latency  # noqa: F401 (register the built-in algorithms)
from moesim.comm.base import ALGORITHMS, AllToAll, Assignments, LayerTraffic, algorithm_for

__all__ = ["ALGORITHMS", "AllToAll", "Assignments", "LayerTraffic", "algorithm_for"]
