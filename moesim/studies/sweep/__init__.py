"""Parameter sweeps: a base scenario, axes over dotted paths, points run by a pluggable executor, results
cached per point by a hash of the resolved scenario."""

from moesim.studies.sweep.run import run_sweep
from moesim.studies.sweep.spec import SweepSpec, load_sweep

__all__ = ["SweepSpec", "load_sweep", "run_sweep"]
