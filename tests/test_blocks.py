"""Whole-model scope: attention, dense blocks and the head add hand-checkable time."""

import numpy as np
import pytest

from moesim import api
from moesim.hw.costs.roofline import ComputeCosts
from moesim.ir.blocks import attention_time, head_time
from moesim.iteration.scenario import scenario_from_dict
from moesim.util.errors import ScenarioError


def scen(scope="whole_model", **workload):
    return scenario_from_dict({"model": {"base": "deepseek-v3", "num_hidden_layers": 6},
                               "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 8},
                               "workload": {"scope": scope, **workload}})


def test_decode_attention_grows_linearly_with_context_when_memory_bound():
    s = scen()
    c = ComputeCosts.from_gpu(s.cluster.gpu, "fp8")
    t = np.array([128.0])
    a, b, d = (attention_time(t, s.model, c, True, L)[0] for L in (32_768, 65_536, 98_304))
    assert (d - b) == pytest.approx(b - a, rel=1e-6)  # constant increment per added context: linear
    # the increment is the KV read at the effective HBM rate: 128 seqs x 32k tokens x 1152 B
    assert b - a == pytest.approx(128 * 32_768 * 1152 / (s.cluster.gpu.hbm_bandwidth * 0.8), rel=1e-6)


def test_prefill_head_computes_logits_once_per_sequence():
    s = scen()
    c = ComputeCosts.from_gpu(s.cluster.gpu, "fp8")
    one = head_time(np.array([4096.0]), s.model, c, False, 4096)[0]
    assert one == pytest.approx(head_time(np.array([1.0]), s.model, c, True, 4096)[0])


def test_whole_model_adds_time_and_says_so():
    moe = api.run_scenario(scen("moe_layers", tokens_per_gpu=512)).doc
    whole = api.run_scenario(scen(tokens_per_gpu=512)).doc
    assert whole["throughput_scope"] == "whole_model" and moe["throughput_scope"] == "moe_layers"
    assert whole["iteration_time_s"] > moe["iteration_time_s"]
    assert whole["totals"]["stages"]["attention_core"] > 0 and "attention_core" not in moe["totals"]["stages"]
    assert whole["stage_names"][:3] == ["attention_proj", "attention_core", "norms"] and "head" in whole["stage_names"]
    assert whole["context_tokens"] == 4096
    assert whole["tokens_per_s_per_node"] == pytest.approx(whole["throughput_tokens_per_s"] / whole["nodes"])


def test_scope_defaults_to_the_whole_model_when_the_model_has_an_attention_shape():
    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 5},
           "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 8}}
    assert scenario_from_dict(raw).workload.scope == "whole_model"
    bare = {"model": {"name": "noshape", "hidden_size": 1024, "moe_intermediate_size": 512, "n_routed_experts": 8,
                      "num_experts_per_tok": 2, "num_hidden_layers": 2}, "cluster": raw["cluster"]}
    assert scenario_from_dict(bare).workload.scope == "moe_layers"


def test_whole_model_needs_the_attention_shape():
    with pytest.raises(ScenarioError, match="workload.scope"):
        scenario_from_dict({"model": {"name": "noshape", "hidden_size": 1024, "moe_intermediate_size": 512,
                                      "n_routed_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2},
                            "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 8},
                            "workload": {"scope": "whole_model"}})


def test_reserving_compute_for_communication_slows_compute_only():
    base = scenario_from_dict({"model": {"base": "deepseek-v3", "num_hidden_layers": 5},
                               "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
                               "workload": {"tokens_per_gpu": 256}})
    reserved = base.model_copy(update={"comm": base.comm.model_copy(update={"reserved_compute_fraction": 0.5})})
    a, b = api.run_scenario(base).built.pieces[0], api.run_scenario(reserved).built.pieces[0]
    for name in ("router", "permute", "routed_experts", "shared_experts", "unpermute"):
        assert b.moe[name] == pytest.approx(2 * a.moe[name])
    assert b.before["attention_core"] == pytest.approx(2 * a.before["attention_core"])
    assert b.dispatch.nbytes.sum() == a.dispatch.nbytes.sum()


def test_overlapping_shared_experts_never_slows_and_off_reproduces_the_default():
    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 5},
           "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8}, "workload": {"tokens_per_gpu": 256}}
    default = api.run_scenario(scenario_from_dict(raw)).doc["iteration_time_s"]
    off = api.run_scenario(scenario_from_dict({**raw, "comm": {"overlap_shared_experts": False}})).doc
    on = api.run_scenario(scenario_from_dict({**raw, "comm": {"overlap_shared_experts": True}})).doc
    assert off["iteration_time_s"] == default
    assert on["iteration_time_s"] < default


def test_two_micro_batches_keep_every_token_and_hide_communication():
    raw = {"seed": 3, "model": {"base": "deepseek-v3", "num_hidden_layers": 6},
           "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
           "router": {"stats": {"kind": "uniform"}}, "placement": {"kind": "eplb"},
           "workload": {"tokens_per_gpu": 1024, "scope": "whole_model"}}
    one = api.run_scenario(scenario_from_dict(raw)).doc
    two = api.run_scenario(scenario_from_dict({**raw, "workload": {**raw["workload"], "micro_batches": 2}})).doc
    assert two["totals"]["computed_copies"] == one["totals"]["computed_copies"] == 16 * 1024 * 8 * 3
    assert two["totals"]["inter_node_bytes"] == pytest.approx(one["totals"]["inter_node_bytes"], rel=0.02)
    assert two["iteration_time_s"] < one["iteration_time_s"]
    with pytest.raises(ScenarioError, match="micro_batches"):
        scenario_from_dict({**raw, "workload": {"tokens_per_gpu": 1023, "micro_batches": 2}})


def test_training_is_about_three_forwards_when_compute_bound():
    raw = {"seed": 1, "model": {"base": "deepseek-v3", "num_hidden_layers": 6},
           "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 8,
                       "intra_node": {"bandwidth": 1e15, "latency": 0}},
           "router": {"stats": {"kind": "uniform"}},
           "workload": {"tokens_per_gpu": 8192, "scope": "whole_model", "gradient_sync": False}}
    fwd = api.run_scenario(scenario_from_dict(raw)).doc
    train = api.run_scenario(scenario_from_dict({**raw, "workload": {**raw["workload"], "mode": "training"}})).doc
    assert train["iteration_time_s"] / fwd["iteration_time_s"] == pytest.approx(3.0, rel=0.03)
    assert [r["pass"] for r in train["layers"]] == ["forward"] * 3 + ["backward"] * 3
    assert train["gradient_sync_s"] == 0.0


def test_gradient_sync_is_a_ring_all_reduce_on_the_topology():
    """Dense gradients: a ring over all 16 GPUs in order; each sends 2·15/16 of the buffer to the next.
    Across the two nodes the ring's hops 7→8 and 15→0 cross NICs, so the stage takes the NIC time of that
    many bytes (plus 2·15 start-up latencies as a floor)."""
    from moesim.ir.resolve import resolve
    from moesim.ir.training import dense_gradient_bytes, gradient_sync_stages

    raw = {"model": {"base": "deepseek-v3", "num_hidden_layers": 6},
           "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8}, "workload": {"tokens_per_gpu": 256,
                                                                                   "mode": "training"}}
    res = api.run_scenario(scenario_from_dict(raw))
    r = resolve(res.built.scenario)
    dense, experts = gradient_sync_stages(r, res.built.placement)
    nbytes = 2 * 15 / 16 * dense_gradient_bytes(r)
    assert dense.flows.nbytes == pytest.approx(np.full(16, nbytes))
    assert (dense.flows.dst == (dense.flows.src + 1) % 16).all()
    d = res.records.stage(len(res.programs[0]) - 1, "gradient_sync")
    expect = max(nbytes / r.links.nic_Bps + 2 * r.links.nic_latency_s, dense.latency_s)
    assert (d[:, 2] - d[:, 0]).max() == pytest.approx(expect, rel=1e-3)
    assert res.doc["gradient_sync_s"] == pytest.approx(res.doc["totals"]["stages"]["gradient_sync"]
                                                       + res.doc["totals"]["stages"].get("expert_gradient_sync", 0))
    # contiguous placement without redundant experts replicates no expert: nothing to sync there
    assert experts.flows.size == 0


def test_expert_gradients_sync_over_each_experts_replicas():
    """8 experts + 8 redundant on 8 GPUs (contiguous: the hottest get the replicas): every replicated
    expert's GPUs form a ring; per pair the bytes are 2(r−1)/r of one expert's BF16 gradients per layer."""
    from moesim.ir.resolve import resolve
    from moesim.ir.training import expert_sync_flows
    from moesim.iteration.build import build

    s = scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                            "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 8},
                            "placement": {"kind": "contiguous", "redundant_experts": 8},
                            "workload": {"mode": "training", "tokens_per_gpu": 64}})
    b = build(s)
    flows, replicas = expert_sync_flows(resolve(s), b.placement, 8)
    grad = 3 * 4096 * 14336 * 2  # Mixtral: hidden 4096, expert width 14336, BF16
    per_pair = {}
    for layer in range(2):
        row, gpu = b.placement.phy2log[layer], b.placement.slot_gpu()
        for e in range(8):
            g = gpu[np.flatnonzero(row == e)]
            if len(g) > 1:
                for a, c in zip(g, np.roll(g, -1)):
                    if a != c:
                        per_pair[(a, c)] = per_pair.get((a, c), 0) + 2 * (len(g) - 1) / len(g) * grad
    got = {(int(a), int(c)): float(x) for a, c, x in zip(flows.src, flows.dst, flows.nbytes)}
    assert got == pytest.approx(per_pair) and replicas == int(b.placement.logcnt.max())


def test_tensor_parallel_attention_reads_fewer_weights_and_pays_an_all_reduce():
    s = scen()
    c = ComputeCosts.from_gpu(s.cluster.gpu, "fp8")
    t = np.array([4.0])  # decode-like small batch: weight reads dominate the projections
    dp = attention_time(t, s.model, c, True, 16, tp=1)[0]
    tp = attention_time(t, s.model, c, True, 16, tp=8, link_Bps=1e30, latency_s=0.0)[0]
    assert tp < dp  # 1/8 of the weights per GPU, all-reduce free here
    slow = attention_time(t, s.model, c, True, 16, tp=8, link_Bps=1e9, latency_s=0.0)[0]
    assert slow - tp == pytest.approx(2 * 7 / 8 * 8 * 4 * 7168 * 2 / 1e9)
    from moesim.model.memory import memory_per_gpu

    def kv(tp_):
        raw = {"model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 4, "gpus_per_node": 8},
               "workload": {"mode": "decode", "tokens_per_gpu": 16, "attention_tp": tp_}}
        return memory_per_gpu(scenario_from_dict(raw))["kv_cache_bytes"]

    assert kv(8) == pytest.approx(8 * kv(1))  # MLA's latent cache is not split by heads


def test_gradient_accumulation_repeats_forward_backward_and_syncs_once():
    raw = {"seed": 1, "model": {"base": "deepseek-v3", "num_hidden_layers": 5},
           "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
           "workload": {"tokens_per_gpu": 256, "mode": "training"}}
    one = api.run_scenario(scenario_from_dict(raw)).doc
    four = api.run_scenario(scenario_from_dict({**raw, "workload": {**raw["workload"],
                                                                     "accumulation_steps": 4}})).doc
    sync = one["gradient_sync_s"]
    assert four["gradient_sync_s"] == pytest.approx(sync, rel=1e-12) and sync > 0  # same work, later start
    # steps repeat the same work; GPUs may start a later step staggered (no stage re-synchronises them all)
    assert four["iteration_time_s"] == pytest.approx(4 * (one["iteration_time_s"] - sync) + sync, rel=1e-3)
    assert four["tokens_per_iteration"] == 4 * one["tokens_per_iteration"]
    assert [r["step"] for r in four["layers"]][::4] == [0, 1, 2, 3]


def test_tp_all_reduce_runs_as_flows_on_the_topology():
    """TP 2 on 2 GPUs: after attention (and each tensor-parallel dense FFN) each GPU sends 2·(1/2)·(2T)·H·2
    bytes to its ring neighbour over NVLink, then routes: ROUTED − START = attention + collective latency +
    bytes / bandwidth + gate. The first MoE layer (block 3) folds 4 attention blocks and 3 dense FFNs: 7."""
    raw = {"seed": 1, "model": {"base": "deepseek-v3", "num_hidden_layers": 4},
           "cluster": {"gpu": "h800", "nodes": 1, "gpus_per_node": 2,
                       "intra_node": {"bandwidth": 1e10, "latency": 0}},
           "router": {"stats": {"kind": "uniform"}}, "placement": {"redundant_experts": 0},
           "workload": {"tokens_per_gpu": 128, "scope": "whole_model", "attention_tp": 2}}
    res = api.run_scenario(scenario_from_dict(raw))
    pc = res.built.pieces[0]
    assert pc.tp_allreduce is not None and pc.tp_allreduce.nbytes[0] == pytest.approx(2 * 0.5 * 256 * 7168 * 2 * 7)
    rec = res.records
    lat = res.built.scenario.cluster.gpu.collective_latency
    ar = rec.stage(0, "tp_allreduce")
    attention = sum(pc.before[k] for k in ("attention_proj", "attention_core", "norms", "dense_ffn") if k in pc.before)
    assert ar[:, 0] == pytest.approx(attention, rel=1e-9)
    assert ar[:, 2] - ar[:, 0] == pytest.approx(lat + pc.tp_allreduce.nbytes[0] / 1e10, rel=1e-6)
    assert rec.stage(0, "router")[:, 1] == pytest.approx(ar[:, 2], rel=1e-12)
    train = api.run_scenario(scenario_from_dict({**raw, "workload": {**raw["workload"], "mode": "training"}}))
    assert train.doc["iteration_time_s"] > res.doc["iteration_time_s"]
    assert "bwd_tp_allreduce" in train.doc["stage_names"]


def _sliding(window: int, kinds=None):
    layers = 4
    model = {"base": "qwen3-30b-a3b", "num_hidden_layers": layers, "sliding_window": window,
             "attention_kinds": kinds or ["sliding"] * layers}
    return scenario_from_dict({"model": model, "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 8},
                               "workload": {"mode": "decode", "tokens_per_gpu": 16, "context_tokens": 8192}})


def test_sliding_window_blocks_keep_and_read_only_their_window_by_hand():
    """Qwen3-30B-A3B shape: 4 KV heads x 128 x 2 (K, V) x 2 B = 2,048 B per token per block. A 1,024-token
    window keeps 1,024 of the 8,192 context tokens: a decode step reads 16 x 1,024 x 2,048 B per block, and the
    cache of 16 sequences over 4 blocks is 16 x 4 x 1,024 x 2,048 B."""
    from moesim.model.layers import LAYER_KINDS
    from moesim.model.memory import memory_per_gpu
    s, full = _sliding(1024), _sliding(1024, ["full"] * 4)
    assert memory_per_gpu(s)["kv_cache_bytes"] == 16 * 4 * 1024 * 2048
    assert memory_per_gpu(full)["kv_cache_bytes"] == 16 * 4 * 8192 * 2048
    c = ComputeCosts.from_gpu(s.cluster.gpu, "bf16")
    sliding, gqa = LAYER_KINDS.get("sliding"), LAYER_KINDS.get("gqa")
    t = np.array([16.0])
    win = attention_time(t, s.model, c, True, 8192, kind=sliding)[0]
    assert win == pytest.approx(attention_time(t, s.model, c, True, 1024, kind=gqa)[0], rel=1e-12)
    # a window at least the context changes nothing
    assert attention_time(t, _sliding(8192).model, c, True, 8192, kind=sliding)[0] == \
        pytest.approx(attention_time(t, s.model, c, True, 8192, kind=gqa)[0], rel=1e-12)


def test_causal_prefill_span_under_a_window_by_hand():
    """Query i of L attends over min(i, w) keys: the mean is w - w^2 / (2L) for w < L, L/2 without a window."""
    from moesim.model.layers import causal_span as _causal_span
    assert _causal_span(8192, 8192) == 4096
    assert _causal_span(1024, 8192) == 1024 - 1024 * 1024 / (2 * 8192)
    exact = np.minimum(np.arange(1, 8193), 1024).mean()
    assert _causal_span(1024, 8192) == pytest.approx(exact, rel=1e-3)


def test_a_sliding_block_without_a_window_is_refused():
    with pytest.raises(ScenarioError, match="model.attention_kinds.0.*sliding_window"):
        scenario_from_dict({"model": {"base": "qwen3-30b-a3b", "num_hidden_layers": 2,
                                      "attention_kinds": ["sliding", "full"]}, "cluster": {"gpu": "h100"}})


def test_runtime_overheads_are_named_stages_by_hand():
    """Mixtral, 4 MoE blocks, 8 H100 (one expert per GPU: no regroup), decode: each layer launches 4
    projections, the core, 2 norms, router GEMM and top-k, the permute, gate-up, activation and down, the
    unpermute: 14 kernels, and the head 1 more: 57 kernels at 5 us eager = 0.285 ms, plus 2 ms of host work
    once per iteration; both are their own stages and add exactly that much to the iteration."""
    base = {"model": {"base": "mixtral-8x7b", "num_hidden_layers": 4},
            "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 8},
            "workload": {"mode": "decode", "tokens_per_gpu": 8}}
    plain = api.run_scenario(scenario_from_dict(base)).doc
    over = api.run_scenario(scenario_from_dict(
        {**base, "runtime": {"host_overhead_s": "2ms", "launch": "eager", "kernel_launch_s": "5us"}})).doc
    st = over["totals"]["stages"]
    assert st["host_overhead"] == pytest.approx(2e-3) and st["kernel_launch"] == pytest.approx(57 * 5e-6)
    assert over["iteration_time_s"] - plain["iteration_time_s"] == pytest.approx(2e-3 + 57 * 5e-6, rel=1e-9)
    graphs = api.run_scenario(scenario_from_dict(
        {**base, "runtime": {"launch": "cuda_graph", "kernel_launch_s": "5us"}})).doc
    assert graphs["iteration_time_s"] == plain["iteration_time_s"]  # captured graphs: no launches
