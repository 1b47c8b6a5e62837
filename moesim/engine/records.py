"""Engine output: when every GPU entered, started and ended every stage of every program. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# last axis of SimRecords.times
ENTER, START, END = range(3)


@dataclass(frozen=True)
class SimRecords:
    """times[micro_batch, program, gpu, stage, (enter, start, end)] in seconds; NaN where a program has fewer
    stages than the widest. ``enter``: the GPU reached the stage; ``start``: a compute stage got its resource,
    a communication stage had every partner ready; ``end``: the stage finished on that GPU.

    names[p], kinds[p]: program p's stage names and kinds ("compute" | "comm"), in stage order."""

    times: np.ndarray
    names: tuple[tuple[str, ...], ...]
    kinds: tuple[tuple[str, ...], ...]
    network_recomputes: int
    engine: str = "des"  # des | lockstep
    interleaved_phases: int = 0  # lockstep: phases whose first release came before the previous phase's last

    @property
    def iteration_time_s(self) -> float:
        return float(np.nanmax(self.times[..., END])) if self.times.size else 0.0

    def program_end(self) -> np.ndarray:
        """[M, P, G] when each GPU finished each program."""
        return np.nanmax(self.times[..., END], axis=-1)

    def stage(self, p: int, name: str, m: int = 0) -> np.ndarray:
        """[G, 3] enter/start/end of program p's first stage called ``name``."""
        return self.times[m, p, :, self.names[p].index(name)]
