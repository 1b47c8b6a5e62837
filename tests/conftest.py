"""Shared fixtures: tiny hand-checkable clusters and scenarios."""

from __future__ import annotations

import pytest
from hypothesis import settings

from moesim.iteration.scenario import scenario_from_dict

# Property tests draw the same examples on every run (CI must not fail by chance); explore new examples with
# ``pytest --hypothesis-profile=explore``. Each test's own @settings (max_examples, deadline) still apply.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")

TOY_GPU = {"name": "toy", "peak_bf16_flops": 1e12, "peak_fp8_flops": 2e12, "hbm_bytes": 1e9,
           "hbm_bandwidth": 1e9, "sms": 1, "nvlink_bandwidth": 100.0, "gemm_efficiency": 1.0,
           "memory_efficiency": 1.0, "kernel_overhead": 0.0, "tile_rows": 1, "collective_latency": 0.0,
           "nic_bandwidth": 50.0, "nic_latency": 0.0, "nvlink_latency": 0.0}


def toy_scenario(**sections):
    raw = {"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
           "cluster": {"gpu": dict(TOY_GPU), "nodes": 1, "gpus_per_node": 2}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return scenario_from_dict(raw)


@pytest.fixture
def small_v3():
    """DeepSeek-V3 shape, 3 MoE layers, 2 nodes x 8 GPUs: every routing rule and both link tiers."""
    return {"seed": 5, "model": {"base": "deepseek-v3", "num_hidden_layers": 6},
            "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
            "router": {"stats": {"kind": "power_law", "alpha": 1.01}},
            "workload": {"mode": "prefill", "tokens_per_gpu": 256},
            "comm": {"algorithm": "hierarchical", "dispatch_dtype": "fp8", "combine_dtype": "bf16"}}
