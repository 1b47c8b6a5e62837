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
    def of(cls, c: ClusterSpec, layout_exchange: bool = False, algorithm: str = "") -> Links:
        """``algorithm``: a start-up the GPU's figures measured for it (``a2a_startup``) replaces the
        collective latency for dispatch and combine, and the NVLink rate its kernels reach
        (``a2a_nvlink_bandwidth``) sets ``a2a_nvlink_scale``."""
        lat = c.gpu.collective_latency
        startup = (c.gpu.a2a_startup or {}).get(algorithm)
        d_lat, c_lat = startup if startup else (2 * lat if layout_exchange else lat, lat)
        nvlink = c.intra_node.bandwidth or c.gpu.nvlink_bandwidth
        reached = (c.gpu.a2a_nvlink_bandwidth or {}).get(algorithm)
        scale = nvlink / reached if reached and not c.intra_node.bandwidth else 1.0  # an override wins
        return cls(
            nvlink_Bps=nvlink,
            nvlink_latency_s=c.intra_node.latency if c.intra_node.latency is not None else c.gpu.nvlink_latency,
            nic_Bps=c.inter_node.nic_bandwidth or c.gpu.nic_bandwidth,
            nic_latency_s=c.inter_node.latency if c.inter_node.latency is not None else c.gpu.nic_latency,
            nics_per_node=c.inter_node.nics_per_node or c.gpus_per_node,
            collective_latency_s=lat, dispatch_latency_s=d_lat, combine_latency_s=c_lat, a2a_nvlink_scale=scale)
