"""Parameter sweeps: a base scenario, axes over dotted paths, points run by a pluggable executor, results
cached per point by a hash of the resolved scenario."""

from moesim.sweep.executor import Executor, LocalProcessExecutor, SerialExecutor, make_executor
from moesim.sweep.run import run_sweep
from moesim.sweep.spec import SweepSpec, load_sweep

__all__ = ["Executor", "LocalProcessExecutor", "SerialExecutor", "SweepSpec", "load_sweep", "make_executor",
           "run_sweep"]
