"""Machines and precisions of 2026: NVL72 racks (72 GPUs in one NVLink domain), Blackwell catalogue entries,
FP4 weights with their block scales, FP4 tensor-core rates, an FP8 KV cache. Bytes per link by hand."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.hw.costs.roofline import ComputeCosts
from moesim.hw.topology import build_topology
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.layers import kv_bytes_all_blocks
from moesim.model.memory import memory_per_gpu
from moesim.model.moe import BYTES_PER_PARAM

B = 1e6  # bytes from every GPU to every other


def _link_bytes(cluster: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(bytes per link, the link kinds, GPUs) of a uniform all-to-all: every GPU sends B to every other."""
    s = scenario_from_dict({"model": "deepseek-v3", "cluster": cluster, "placement": {"redundant_experts": 32}})
    topo = build_topology(s.cluster)
    g = topo.num_gpus
    src, dst = np.divmod(np.arange(g * g), g)
    keep = src != dst
    paths = topo.paths(src[keep], dst[keep])
    per = np.bincount(paths[paths >= 0], minlength=topo.capacity_Bps.size) * B
    return per, topo.link_kind, g


def test_an_nvl72_rack_is_one_nvlink_domain_by_default():
    s = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "gb200", "nodes": 1},
                            "placement": {"redundant_experts": 32}})
    assert s.cluster.gpus_per_node == 72 and s.cluster.num_gpus == 72
    hgx = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "b300", "nodes": 1}})
    assert hgx.cluster.gpus_per_node == 8


def test_all_to_all_inside_one_nvl72_domain_never_touches_a_nic():
    """72 GPUs, one domain: every GPU's NVLink up and down carry its 71 peers' B each; NICs and the fabric
    carry nothing."""
    per, kind, g = _link_bytes({"gpu": "gb200", "nodes": 1})
    assert g == 72
    assert np.all(per[kind == 0] == pytest.approx(71 * B))
    assert per[kind != 0].sum() == 0


def test_all_to_all_across_two_nvl72_domains_crosses_the_nics():
    """144 GPUs in two domains, one NIC per GPU: each GPU's NVLink up carries its 71 domain peers' B, its NIC
    up the 72 GPUs of the other domain's B; every byte that leaves a domain crosses exactly one NIC up and one
    NIC down."""
    per, kind, g = _link_bytes({"gpu": "gb200", "nodes": 2})
    assert g == 144
    nvl_up = per[:g]
    nic = per[kind == 1]
    assert np.all(nvl_up == pytest.approx(71 * B))
    assert np.all(nic == pytest.approx(72 * B))  # each NIC: 72 x B out (up) and 72 x B in (down)
    assert nic.sum() == pytest.approx(2 * g * 72 * B)


@pytest.mark.parametrize("dtype, bits", [("nvfp4", 4 + 8 / 16), ("mxfp4", 4 + 8 / 32), ("fp4", 4), ("fp8", 8)])
def test_fp4_formats_carry_their_block_scales(dtype, bits):
    assert BYTES_PER_PARAM[dtype] == pytest.approx(bits / 8)


def test_fp4_weights_use_fp4_tensor_cores_only_where_the_gpu_has_them():
    gb = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "gb200", "nodes": 1},
                             "placement": {"redundant_experts": 32}}).cluster.gpu
    h = scenario_from_dict({"model": "deepseek-v3", "cluster": {"gpu": "h100", "nodes": 4}}).cluster.gpu
    assert ComputeCosts.from_gpu(gb, "nvfp4").peak_flops == 10e15
    assert ComputeCosts.from_gpu(h, "nvfp4").peak_flops == h.peak_bf16_flops  # dequantised on Hopper
    assert ComputeCosts.from_gpu(gb, "fp8").peak_flops == 5e15


def test_an_fp8_kv_cache_halves_the_cache():
    """DeepSeek-V3's MLA caches 512 + 64 elements per token per block: 1,152 B in BF16, 576 B in FP8."""
    base = {"cluster": {"gpu": "h200", "nodes": 4}}
    bf = scenario_from_dict({"model": "deepseek-v3", **base}).model
    f8 = scenario_from_dict({"model": {"base": "deepseek-v3", "kv_cache_dtype": "fp8"}, **base}).model
    assert kv_bytes_all_blocks(bf) == 61 * 1152 and kv_bytes_all_blocks(f8) == 61 * 576


def test_fp4_checkpoints_keep_attention_in_bf16():
    """gpt-oss-120b: MXFP4 experts (4.25 bits each), BF16 attention, router and embeddings; its 36 blocks
    alternate 128-token sliding-window and full attention, so the cache of a 8,192-token sequence is 18 full
    blocks plus 18 windows of 128 tokens."""
    s = scenario_from_dict({"model": "gpt-oss-120b", "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 1},
                            "workload": {"mode": "decode", "tokens_per_gpu": 1, "context_tokens": 8192}})
    m = s.model
    assert m.dense_dtype == "bf16" and m.weight_dtype == "mxfp4"
    mem = memory_per_gpu(s)
    expert = 3 * 2880 * 2880 * 128 * 36
    assert mem["expert_weights_bytes"] == pytest.approx(expert * 0.53125)
    per_token = 2 * 8 * 64 * 2  # K and V, 8 KV heads of 64, BF16
    assert mem["kv_cache_bytes"] == pytest.approx(per_token * (18 * 8192 + 18 * 128))


def test_gpt_oss_decodes_on_one_h100():
    s = scenario_from_dict({"model": "gpt-oss-120b", "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 1},
                            "workload": {"mode": "decode", "tokens_per_gpu": 16, "context_tokens": 4096}})
    sm = run_scenario(s).summary
    assert sm.iteration_time_s > 0 and sm.meta["memory_per_gpu"]["fits"]


def test_a_shorter_model_keeps_its_attention_pattern():
    s = scenario_from_dict({"model": {"base": "gpt-oss-120b", "num_hidden_layers": 5},
                            "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 1}})
    assert s.model.attention_kinds == ("sliding", "full", "sliding", "full", "sliding")
