"""``low_latency``: DeepEP's low-latency kernels. The same flows as ``flat`` (one copy per (token, expert) from
the token's GPU to the expert's, cross-node over RDMA with no relay, same-node over NVLink, as DeepEP does
since its 2025-06 release); it differs in start-up (no layout exchange) and SMs held (none: the receive hook
runs "without any SM occupation", DeepEP's README)."""

from __future__ import annotations

from moesim.comm.base import ALGORITHMS
from moesim.comm.flat import Flat


class LowLatency(Flat):
    name = "low_latency"
    layout_exchange = False

    def default_sm_share(self, sms: int) -> tuple[float, str]:
        return 0.0, "published: DeepEP low-latency receive holds no SMs"


ALGORITHMS.register("low_latency", LowLatency(),
                    help="DeepEP low-latency kernels: flat's flows, no layout exchange, no SMs held")
