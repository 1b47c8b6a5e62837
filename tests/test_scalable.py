"""The scalable mode (sampled routing + drain network) agrees with the exact mode on a mid-size scenario."""

import pytest

from moesim import api
from moesim.iteration.scenario import scenario_from_dict


def run(raw, **sim):
    return api.run_scenario(scenario_from_dict({**raw, "sim": sim})).doc


@pytest.mark.parametrize("algorithm", ["hierarchical", "flat"])
def test_scalable_within_two_percent_of_exact(small_v3, algorithm):
    # DeepSeek-V3 shape, 2 nodes x 8 GPUs, 4096 tokens/GPU, skewed power-law load
    small_v3["workload"]["tokens_per_gpu"] = 4096
    small_v3["comm"]["algorithm"] = algorithm
    exact = run(small_v3, network="fluid", routing="exact")
    fast = run(small_v3, network="drain", routing="sampled", sampled_tokens=16384)
    assert fast["fidelity"]["routing"] == "sampled"
    for key in ("iteration_time_s",):
        assert fast[key] == pytest.approx(exact[key], rel=0.02)
    assert fast["totals"]["inter_node_bytes"] == pytest.approx(exact["totals"]["inter_node_bytes"], rel=0.02)
