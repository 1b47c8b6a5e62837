"""The serving DES's records: per-request state (struct of arrays) and the iteration log. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.serve.workload import Requests


@dataclass
class State:
    """Per-request state, struct of arrays [R]. t_first / t_done are NaN until set."""

    arrival: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    cached: np.ndarray  # prompt tokens found in the prefix cache
    generated: np.ndarray
    computed: np.ndarray  # prompt tokens computed in the current prefill
    kv: np.ndarray  # KV tokens held (on the instance that has the request now)
    t_first: np.ndarray
    t_done: np.ndarray
    preemptions: np.ndarray
    transfer_s: np.ndarray

    @classmethod
    def of(cls, req: Requests, prefix_hit: float) -> State:
        n = len(req)
        z = np.zeros(n, dtype=np.int64)
        return cls(req.arrival_s, req.input_tokens, req.output_tokens,
                   np.floor(prefix_hit * req.input_tokens).astype(np.int64), z.copy(), z.copy(), z.copy(),
                   np.full(n, np.nan), np.full(n, np.nan), z.copy(), np.zeros(n))

    def prompt(self, r: int) -> int:
        """Tokens the next prefill of request r must hold: its prompt and what it generated before."""
        return int(self.isl[r] + self.generated[r])


@dataclass
class Log:
    """One row per iteration: start, seconds, role, instance, kind (0 prefill, 1 decode), tokens per GPU,
    context, running sequences, waiting requests, KV tokens used."""

    rows: list[tuple[float, float, int, int, int, float, float, int, int, float]] = field(default_factory=list)
