"""moesim: a discrete-event simulator and capacity planner for Mixture-of-Experts models on GPU clusters.

The Python API lives in :mod:`moesim.api`; the command line in :mod:`moesim.cli.main`.
"""

__version__ = "0.1.0"
