"""Executors: map a picklable function over points and yield (point, result) as each finishes, serially, in
local worker processes, or as Ray tasks. Serving surfaces, plans and sweeps all run their points here.
A new executor is one module plus one ``EXECUTORS.register``."""

from moesim.exec.local import EXECUTORS, Executor, LocalProcessExecutor, SerialExecutor, make_executor

__all__ = ["EXECUTORS", "Executor", "LocalProcessExecutor", "SerialExecutor", "make_executor"]
