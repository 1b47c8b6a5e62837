"""Link figures of a cluster after the scenario's overrides of the GPU's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from moesim.config.schema import ClusterSpec


@dataclass(frozen=True)
class Links:
    """Link figures after the scenario's overrides of the GPU's defaults (bytes/s, seconds)."""

    nvlink_Bps: float
    nvlink_latency_s: float
    nic_Bps: float
    nic_latency_s: float
    nics_per_node: int
    collective_latency_s: float  # one collective's start-up latency
    dispatch_latency_s: float  # dispatch's: one more start-up with a layout exchange (DeepEP notify)
    combine_latency_s: float = 0.0
    a2a_nvlink_scale: float = 1.0  # nvlink_Bps / the rate the algorithm's all-to-all kernels reach

    @classmethod
    def of(cls, c: ClusterSpec, startups: tuple[float, float] | None = None, a2a_nvlink_scale: float = 1.0) -> Links:
        """The cluster's links; ``startups``: the all-to-all algorithm's (dispatch, combine) start-ups in s
        (default: the collective latency each) and ``a2a_nvlink_scale`` its kernels' NVLink rate
        (``moesim.comm.base.AllToAll``)."""
        lat = c.gpu.collective_latency
        d_lat, c_lat = startups if startups is not None else (lat, lat)
        nvlink = c.intra_node.bandwidth or c.gpu.nvlink_bandwidth
        return cls(
            nvlink_Bps=nvlink,
            nvlink_latency_s=c.intra_node.latency if c.intra_node.latency is not None else c.gpu.nvlink_latency,
            nic_Bps=c.inter_node.nic_bandwidth or c.gpu.nic_bandwidth,
            nic_latency_s=c.inter_node.latency if c.inter_node.latency is not None else c.gpu.nic_latency,
            nics_per_node=c.inter_node.nics_per_node or c.gpus_per_node,
            collective_latency_s=lat, dispatch_latency_s=d_lat, combine_latency_s=c_lat,
            a2a_nvlink_scale=a2a_nvlink_scale)
