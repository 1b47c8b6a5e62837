"""The serving DES's records: per-request state (struct of arrays) and the iteration log. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.config.serving import MtpSpec
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


def accepted(mtp: MtpSpec | None, rng: np.random.Generator, n: int) -> np.ndarray:
    """Tokens each of n sequences emits in one decode step: 1 without MTP; with d drafts, 1 plus the number
    of leading drafts accepted (each with probability ``acceptance`` given the earlier ones)."""
    if mtp is None:
        return np.ones(n, dtype=np.int64)
    acc = mtp.acceptance  # one value, or one per draft position (conditional on the earlier ones)
    coins = rng.random((n, mtp.draft_tokens)) < (np.asarray(acc) if isinstance(acc, tuple) else acc)
    return 1 + np.cumprod(coins, axis=1).sum(axis=1)
