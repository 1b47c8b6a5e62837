"""A GPU's resources inside the engine: one queue per resource kind (SMs, copy engines, host CPU), and the
share of SMs that communication kernels hold while they are in flight.

A run of consecutive compute stages of one program holds its resource from the first to the last (one
stream of kernels: two-batch overlap switches micro-batches at communication stages, DeepSeek's and SGLang's
schedule). A compute stage on the SMs runs at (1 − held share) of its speed; when the held share changes mid-stage,
its remaining work is re-timed at the new speed (processor sharing between the kernel and the
communication kernels that hold SMs beside it).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from moesim.ir.program import RESOURCES, SM


class GpuUnits:
    """One GPU's resources."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.queues = {r: simpy.Resource(env, capacity=1) for r in RESOURCES}
        self.held = 0.0
        self.changed = env.event()

    def hold(self, share: float) -> None:
        """A communication kernel takes ``share`` of the SMs (negative: gives it back)."""
        self.held += share
        ev, self.changed = self.changed, self.env.event()
        ev.succeed()

    def run(self, resource: str, seconds: list[float], recs: list[np.ndarray]) -> Generator[simpy.Event, object, None]:
        """Queue for ``resource`` once, then run consecutive stages of ``seconds`` (at full speed) back to back
        on it, as one stream of kernels does; recs[i][1:] = when stage i started and ended."""
        env = self.env
        with self.queues[resource].request() as req:
            yield req
            for sec, rec in zip(seconds, recs):
                rec[1] = env.now
                yield from self._work(resource, sec)
                rec[2] = env.now

    def _work(self, resource: str, seconds: float) -> Generator[simpy.Event, object, None]:
        env, left = self.env, seconds
        while resource == SM and self.held > 0 and left > 0:
            rate, t0 = 1.0 - self.held, env.now
            done = env.timeout(left / rate)
            fired = yield done | self.changed
            if done in fired:
                return
            left -= (env.now - t0) * rate
        yield env.timeout(left)
