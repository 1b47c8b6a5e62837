"""Family by family: what a Hugging Face config means, in moesim's (DeepSeek's) key names, and what moesim
refuses. Each rule cites the family; the configs themselves are in tests/fixtures/hf-configs (sources in
its corpus.yaml)."""

from __future__ import annotations

from typing import Any

# keys whose presence means layers moesim cannot represent, and why
_REFUSED_KEYS = {
    "attn_layer_period": "Mamba layers between attention layers (Jamba) are not modelled",
    "expert_layer_period": "Mamba layers between attention layers (Jamba) are not modelled",
}
_ATTENTION_KINDS = {"full_attention", "sliding_attention", "attention", "deepseek_sparse_attention",
                    "linear_attention"}
# Hugging Face layer_types -> moesim attention kinds (full: the model's own full-attention kind)
LAYER_TYPES = {"sliding_attention": "sliding", "linear_attention": "linear", "full_attention": "full",
               "attention": "full", "deepseek_sparse_attention": "full"}
# sqrtsoftplus (DeepSeek-V4): an independent, increasing score per expert, routed as sigmoid scores are
_SCORING = {"softmax": "softmax", "sigmoid": "sigmoid", "sqrtsoftplus": "sigmoid"}
_TOPK_METHOD = {"noaux_tc": "sum_top2", "group_limited_greedy": "max", "greedy": "max"}


def refuse(cfg: dict[str, Any]) -> None:
    """Raise ValueError naming the first key that describes something moesim does not model."""
    for key, why in _REFUSED_KEYS.items():
        if cfg.get(key) not in (None, [], "", 0):
            raise ValueError(f"{key}: {why}")
    kinds = set(cfg.get("layer_types") or ()) - _ATTENTION_KINDS
    if kinds:
        raise ValueError(f"layer_types: {sorted(kinds)} layers are not modelled; moesim models full, "
                         "sliding-window and Gated DeltaNet linear attention")
    func = cfg.get("scoring_func") or cfg.get("score_func") or cfg.get("moe_router_activation_func")
    if func is not None and str(func).lower() not in _SCORING:
        raise ValueError(f"scoring_func: {func!r} routing is not implemented (softmax or sigmoid)")
    if cfg.get("enable_moe_block") is False:
        raise ValueError("enable_moe_block: false: the model has no MoE layers")


def adapt(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config with its family's conventions made explicit in DeepSeek's names."""
    kind = str(cfg.get("model_type", ""))
    if "dim" in cfg and "n_layers" in cfg:
        return _deepseek_native(cfg)
    if "ffn_config" in cfg:
        return _dbrx(cfg)
    out = dict(cfg)
    func = cfg.get("scoring_func") or cfg.get("moe_router_activation_func")
    if func is not None:
        out["scoring_func"] = _SCORING[str(func).lower()]
    if kind.startswith(("glm4_moe", "glm_moe")):
        out.setdefault("scoring_func", "sigmoid")  # GLM-4.5 / GLM-5 route with sigmoid and a bias
    elif kind.startswith("minimax"):
        out["scoring_func"] = _SCORING[str(cfg.get("scoring_func", "softmax")).lower()]
    family = next((fn for prefix, fn in _FAMILIES if kind.startswith(prefix)), None)
    if family is not None:
        out.update(family(cfg))
    if out.get("topk_method") in _TOPK_METHOD:
        out["group_score"] = _TOPK_METHOD[out["topk_method"]]
    out["mlp_only_layers"] = _dense_layers(cfg)
    if isinstance(out.get("moe_layer_freq"), list):  # a 0/1 list (MiMo): the dense ones are listed above
        out["moe_layer_freq"] = 1
    return out


def _dense_layers(cfg: dict[str, Any]) -> list[int]:
    """Blocks with a dense FFN where the layer rule would put an MoE: Qwen's ``mlp_only_layers``, GLM's
    ``mlp_layer_types`` ("dense" / "sparse"), a 0/1 ``moe_layer_freq`` list (MiMo)."""
    dense = set(cfg.get("mlp_only_layers") or ())
    types = cfg.get("mlp_layer_types")
    if types:
        dense |= {i for i, t in enumerate(types) if t == "dense"}
    freq = cfg.get("moe_layer_freq")
    if isinstance(freq, list):
        dense |= {i for i, f in enumerate(freq) if not f}
    return sorted(dense)


def _llama4(cfg: dict[str, Any]) -> dict[str, Any]:
    """Llama 4: every MoE block has one shared expert as wide as a routed one (Meta's config has no key for
    it); routing is top-k then a sigmoid of the chosen logit; dense blocks use intermediate_size_mlp."""
    inter = cfg["intermediate_size"]
    return {"moe_intermediate_size": inter, "n_shared_experts": 1, "shared_expert_intermediate_size": inter,
            "intermediate_size": cfg.get("intermediate_size_mlp", inter), "scoring_func": "sigmoid",
            "norm_topk_prob": False}


def _kimi_linear(cfg: dict[str, Any]) -> dict[str, Any]:
    """Kimi Linear / Kimi-K3: ``linear_attn_config`` lists (1-based) Kimi Delta Attention blocks and MLA
    blocks; KDA is Gated DeltaNet with a full-rank, per-channel forget gate (``use_full_rank_gate``), as many
    key as value heads. A latent MoE (``routed_expert_hidden_size``) dispatches tokens projected to that width
    and runs the routed experts in it. Assumed where the config says no more: the shared experts run at the
    full hidden size; the projections to and from the latent width are one H x latent matrix each per block."""
    lin = cfg["linear_attn_config"]
    n = int(cfg["num_hidden_layers"])
    kda, full = {int(i) - 1 for i in lin.get("kda_layers", ())}, {int(i) - 1 for i in lin.get("full_attn_layers", ())}
    if kda | full != set(range(n)):
        raise ValueError("linear_attn_config: kda_layers and full_attn_layers must cover every block")
    heads, hd = int(lin["num_heads"]), int(lin["head_dim"])
    out: dict[str, Any] = {
        "attention_kinds": ["linear" if i in kda else "full" for i in range(n)],
        "linear_num_key_heads": heads, "linear_num_value_heads": heads, "linear_key_head_dim": hd,
        "linear_value_head_dim": hd, "linear_conv_kernel_dim": int(lin.get("short_conv_kernel_size", 4)),
        "linear_channel_gate": bool(lin.get("use_full_rank_gate", False)),
        "mla_output_gate": bool(cfg.get("mla_use_output_gate", False))}
    if cfg.get("routed_expert_hidden_size"):
        out["expert_hidden_size"] = int(cfg["routed_expert_hidden_size"])
    return out


def _gemma4(cfg: dict[str, Any]) -> dict[str, Any]:
    """Gemma 4 MoE: every block runs a dense GeLU-gated MLP (``intermediate_size``) beside its routed experts,
    which moesim carries as one always-on shared expert of that width; global (full) layers have their own
    head shape (``global_head_dim``, ``num_global_key_value_heads``) and keys that are the values."""
    out: dict[str, Any] = {"n_shared_experts": 1, "shared_expert_intermediate_size": cfg.get("intermediate_size")}
    out.update({k: cfg[k] for k in ("global_head_dim", "num_global_key_value_heads", "attention_k_eq_v")
                if cfg.get(k) is not None})
    out.pop("intermediate_size", None)
    return out


def _deepseek_v4(cfg: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek-V4: ``compress_ratios`` per block (entries past the blocks belong to the MTP module): the
    smaller ratio's blocks are compressed sparse attention (csa), the larger's heavily compressed (hca), a
    0 a block of the sliding window alone (taken as sliding-window attention of the same query and KV
    heads). Assumed: the first ``num_hash_layers`` blocks' hash routing is routed as the others' (the
    statistics, not the router, set the expert loads); hyper-connections (``hc_mult``) add no weights that
    count; FP8 attention beside FP4 experts (quantization_config fp8, expert_dtype fp4)."""
    n = int(cfg["num_hidden_layers"])
    ratios = [int(r) for r in cfg["compress_ratios"][:n]]
    nonzero = sorted({r for r in ratios if r})
    if len(nonzero) > 2:
        raise ValueError(f"compress_ratios: {nonzero}: moesim models two compression ratios (csa, hca)")
    csa, hca = (nonzero[0], nonzero[-1]) if nonzero else (4, 128)
    kinds = ["sliding" if r == 0 else "csa" if r == csa else "hca" for r in ratios]
    out: dict[str, Any] = {"attention_kinds": kinds, "csa_ratio": csa, "hca_ratio": hca}
    q = cfg.get("quantization_config") or {}
    if str(cfg.get("expert_dtype", "")).lower() == "fp4" and str(q.get("quant_method", "")).lower() == "fp8":
        out["dense_weight_dtype"] = "fp8"
    return out


def _nemotron_h(cfg: dict[str, Any]) -> dict[str, Any]:
    """Nemotron-H (Nemotron 3): ``hybrid_override_pattern`` gives each block one mixer or one FFN: ``M`` a
    Mamba-2 mixer, ``*`` attention, ``E`` an MoE FFN, ``-`` a dense FFN; experts and FFNs are squared-ReLU
    (up and down, no gate); the router is a sigmoid with a score bias, as DeepSeek-V3's."""
    pattern = str(cfg["hybrid_override_pattern"])
    bad = sorted(set(pattern) - set("M*E-"))
    if bad:
        raise ValueError(f"hybrid_override_pattern: block types {bad} are not modelled (M, *, E, - are)")
    mixer = {"M": "mamba", "*": "full", "E": "none", "-": "none"}
    ffn = {"M": "none", "*": "none", "E": "moe", "-": "dense"}
    out: dict[str, Any] = {"attention_kinds": [mixer[ch] for ch in pattern], "ffn_kinds": [ffn[ch] for ch in pattern],
                           "num_hidden_layers": len(pattern), "expert_gated": False, "scoring_func": "sigmoid",
                           "shared_expert_intermediate_size": cfg.get("moe_shared_expert_intermediate_size")}
    names = {"n_groups": "mamba_n_groups", "conv_kernel": "mamba_conv_kernel"}
    out.update({ours: cfg[theirs] for theirs, ours in names.items() if cfg.get(theirs)})
    return out


def _mimo(cfg: dict[str, Any]) -> dict[str, Any]:
    """MiMo-V2-Flash: ``hybrid_layer_pattern`` marks sliding-window blocks (1) among full ones (0); the
    sliding blocks have their own head shape (``swa_*``)."""
    out: dict[str, Any] = {}
    pattern = cfg.get("hybrid_layer_pattern")
    if isinstance(pattern, list):
        out["layer_types"] = ["sliding_attention" if p else "full_attention" for p in pattern]
    names = {"swa_num_attention_heads": "sliding_num_attention_heads",
             "swa_num_key_value_heads": "sliding_num_key_value_heads", "swa_head_dim": "sliding_head_dim",
             "swa_v_head_dim": "sliding_v_head_dim"}
    out.update({ours: cfg[theirs] for theirs, ours in names.items() if cfg.get(theirs)})
    return out


def _ernie(cfg: dict[str, Any]) -> dict[str, Any]:
    """ERNIE-4.5: MoE from ``moe_layer_start_index`` every ``moe_layer_interval`` blocks."""
    out: dict[str, Any] = {}
    if "moe_layer_start_index" in cfg:
        out["first_k_dense_replace"] = cfg["moe_layer_start_index"]
    if "moe_layer_interval" in cfg:
        out["moe_layer_freq"] = cfg["moe_layer_interval"]
    return out


def _dbrx(cfg: dict[str, Any]) -> dict[str, Any]:
    """DBRX nests its MoE (``ffn_config``) and attention (``attn_config``) shapes."""
    ffn, attn = cfg["ffn_config"], cfg.get("attn_config") or {}
    return {"model_type": "dbrx", "hidden_size": cfg["d_model"], "num_hidden_layers": cfg["n_layers"],
            "num_attention_heads": cfg["n_heads"], "num_key_value_heads": attn.get("kv_n_heads"),
            "vocab_size": cfg.get("vocab_size"), "n_routed_experts": ffn["moe_num_experts"],
            "num_experts_per_tok": ffn["moe_top_k"], "moe_intermediate_size": ffn["ffn_hidden_size"],
            "tie_word_embeddings": cfg.get("tie_word_embeddings", False)}


def _deepseek_native(cfg: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek's own inference config (``inference/configs/config_671B.json``: dim, n_layers, ...)."""
    names = {"dim": "hidden_size", "inter_dim": "intermediate_size", "moe_inter_dim": "moe_intermediate_size",
             "n_layers": "num_hidden_layers", "n_dense_layers": "first_k_dense_replace",
             "n_heads": "num_attention_heads", "n_activated_experts": "num_experts_per_tok",
             "n_expert_groups": "n_group", "n_limited_groups": "topk_group", "route_scale": "routed_scaling_factor",
             "score_func": "scoring_func"}
    out = {names.get(k, k): v for k, v in cfg.items()}
    out["scoring_func"] = _SCORING[str(out.get("scoring_func", "softmax")).lower()]
    if (out.get("n_group") or 1) > 1:  # V3 ranks groups by the sum of their top two scores, V2 by the max
        out["group_score"] = "sum_top2" if out["scoring_func"] == "sigmoid" else "max"
    return out


# model_type prefix -> the adapter that makes its conventions explicit (one entry per family)
_FAMILIES = (("llama4", _llama4), ("ernie", _ernie), ("mimo", _mimo), ("nemotron_h", _nemotron_h),
             ("kimi_linear", _kimi_linear), ("gemma4", _gemma4), ("deepseek_v4", _deepseek_v4))
