"""EP inside an attention TP group, as the engines run it (SGLang --tp 8 --ep 8 without DP attention,
TensorRT-LLM TP8-EP8): the group's tokens are on every GPU already, so nothing is dispatched and an all-reduce
sums the experts' outputs; and batches of fewer tokens than the group has GPUs (``workload.group_tokens``)."""

from __future__ import annotations

import pytest

from moesim import api
from moesim.config.serving import SchedulerSpec
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import memory_per_gpu
from moesim.serve.engines import scheduling
from moesim.util.errors import ScenarioError


def scen(**workload):
    return scenario_from_dict({"seed": 1, "model": {"base": "deepseek-v3", "num_hidden_layers": 5},
                               "cluster": {"gpu": "h200", "nodes": 1, "gpus_per_node": 8},
                               "workload": {"mode": "decode", "tokens_per_gpu": 1, "context_tokens": 1000,
                                            **workload}})


def run(**workload):
    return api.run_scenario(scen(**workload)).summary


def test_ep_inside_a_tp_group_dispatches_nothing():
    inside = run(attention_tp=8)
    stages = inside.totals.stages
    assert "moe_allreduce" in stages and stages.get("dispatch", 0.0) == 0.0 and stages.get("combine", 0.0) == 0.0
    dp = run()  # data-parallel attention: the same experts reached all-to-all
    assert dp.totals.stages.get("dispatch", 0.0) > 0
    assert memory_per_gpu(scen(attention_tp=8))["dispatch_buffers_bytes"] == 0.0
    # the same whole experts per GPU either way (E/8), the shared expert split over the group
    a, b = memory_per_gpu(scen(attention_tp=8)), memory_per_gpu(scen())
    assert a["expert_weights_bytes"] == pytest.approx(b["expert_weights_bytes"])


def test_training_keeps_megatrons_dispatch():
    s = scen(attention_tp=2, mode="training", tokens_per_gpu=16, scope="moe_layers")
    assert not s.moe_in_tp_group


def test_an_attention_tp_group_smaller_than_the_cluster_reaches_the_experts_all_to_all():
    """Attention TP2 x DP4 on 8 GPUs (SGLang's DP attention, AIConfigurator's tp2 dp4 ep8): the MoE is EP8 over
    the whole cluster, dispatched; each GPU holds E/8 experts, not the E/2 of a TP2 group's own MoE."""
    s = scen(attention_tp=2, tokens_per_gpu=2)
    assert not s.moe_in_tp_group and scen(attention_tp=8).moe_in_tp_group
    stages = api.run_scenario(s).summary.totals.stages
    assert stages.get("dispatch", 0.0) > 0 and "moe_allreduce" not in stages
    assert memory_per_gpu(s)["expert_weights_bytes"] == pytest.approx(memory_per_gpu(scen())["expert_weights_bytes"])


def test_group_tokens_below_one_per_gpu():
    times = [run(attention_tp=8, moe_tp=8, group_tokens=b).iteration_time_s for b in (1, 2, 4, 8)]
    assert times == sorted(times) and times[0] < 0.9 * times[-1]  # fewer experts' weights read
    assert times[-1] == run(attention_tp=8, moe_tp=8).iteration_time_s  # 8 tokens of 8 GPUs: one each


@pytest.mark.parametrize("workload,said", [
    ({"group_tokens": 4}, "needs a decode batch inside an attention TP group"),
    ({"attention_tp": 8, "group_tokens": 12}, "tokens_per_gpu 2"),
])
def test_group_tokens_that_cannot_be_are_one_line(workload, said):
    with pytest.raises(ScenarioError, match=said):
        api.run_scenario(scen(**workload))


def test_cuda_graph_padding_of_a_tp_group_is_a_fraction_per_gpu():
    sc = scheduling(SchedulerSpec(), "sglang", 8, 8)
    assert sc.pad(3 / 8) == pytest.approx(4 / 8)  # a batch of 3 runs SGLang's graph of 4 over 8 GPUs
    assert sc.pad(1 / 8) == pytest.approx(1 / 8)
    dp = scheduling(SchedulerSpec(), "sglang", 8, 1)
    assert dp.pad(3) == 4
