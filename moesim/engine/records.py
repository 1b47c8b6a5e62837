"""Engine inputs (per-layer work) and outputs (timestamps). Plain arrays; no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.traffic import FlowSet

# columns of SimRecords.times
START, ROUTED, DISPATCHED, COMPUTED, COMBINED, END = range(6)
STAGES = ("start", "routed", "dispatched", "computed", "combined", "end")


@dataclass(frozen=True)
class LayerWork:
    """What each GPU does in one MoE layer. Compute times [G] in seconds; flows in bytes."""

    route_s: np.ndarray  # router GEMM + top-k + permute, before dispatch
    expert_s: np.ndarray  # routed experts + shared experts
    unpermute_s: np.ndarray  # weighted sum of expert outputs, after combine
    dispatch: FlowSet
    combine: FlowSet
    during_dispatch_s: np.ndarray | None = None  # compute that runs while dispatch is in flight (shared experts)
    # tensor-parallel attention: its compute [G] and the all-reduce flows that follow it, before route_s
    pre_s: np.ndarray | None = None
    pre_comm: FlowSet | None = None


@dataclass(frozen=True)
class SimRecords:
    """times[layer, gpu, stage]: when each GPU reached each stage (seconds; stages in STAGES order)."""

    times: np.ndarray
    network_recomputes: int

    @property
    def iteration_time_s(self) -> float:
        return float(self.times[-1, :, END].max()) if self.times.size else 0.0
