"""Read a model's shape from a Hugging Face ``config.json`` (and DeepSeek's native inference config).

Each family names the same quantity differently; everything is mapped onto DeepSeek's key names, family by
family (``hf_families``). What moesim cannot represent is refused naming the key and why, never read
half-way: linear-attention and Mamba layers, per-layer head shapes, scoring functions the router does
not implement, per-layer expert counts. The corpus in tests/fixtures/hf-configs checks every family
against the published parameter totals.
"""

from __future__ import annotations

from typing import Any

from moesim.config.hf_families import LAYER_TYPES, adapt, refuse
from moesim.config.schema import ModelSpec

# other families' names -> ours
ALIASES = {
    "num_local_experts": "n_routed_experts",  # Mixtral, Llama 4, MiniMax, gpt-oss
    "num_experts": "n_routed_experts",  # Qwen2/3-MoE, OLMoE, Gemma 4
    "moe_num_experts": "n_routed_experts",  # ERNIE-4.5
    "top_k_experts": "num_experts_per_tok",  # Gemma 4
    "moe_k": "num_experts_per_tok",  # ERNIE-4.5
    "moe_topk": "num_experts_per_tok",  # Hunyuan
    "decoder_sparse_step": "moe_layer_freq",  # Qwen2/3-MoE: block i is MoE when (i + 1) % step == 0
    "interleave_moe_layer_step": "moe_layer_freq",  # Llama 4, the same convention
    "moe_num_shared_experts": "n_shared_experts",  # ERNIE-4.5
    "num_shared_expert": "n_shared_experts",  # Hunyuan
    "num_shared_experts": "n_shared_experts",  # Kimi Linear
    "num_experts_per_token": "num_experts_per_tok",  # Kimi Linear
}


def normalise_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """Rename other families' keys to ours; keeps unknown keys (the schema rejects them)."""
    out = {ALIASES.get(k, k): v for k, v in raw.items()}
    if "moe_intermediate_size" not in out and "intermediate_size" in out and "n_routed_experts" in out:
        out["moe_intermediate_size"] = out.pop("intermediate_size")  # Mixtral: every FFN is an expert
    return out


def from_hf_config(cfg: dict[str, Any], name: str, quant: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map a HF config.json mapping onto ModelSpec fields; keys moesim does not model are ignored, keys
    that change what it models and that it cannot represent raise ValueError naming them. ``quant``: the
    repository's ``hf_quant_config.json`` (NVIDIA ModelOpt checkpoints keep the format there)."""
    if not isinstance(cfg, dict):
        raise ValueError("a config.json holds one JSON object")
    for nest in ("text_config", "language_config"):  # Llama 4, Qwen3-VL, Kimi-K2.5 nest the language model
        if isinstance(cfg.get(nest), dict):
            cfg = {**cfg[nest], "quantization_config": cfg.get("quantization_config")}
    refuse(cfg)
    out = normalise_keys(adapt(cfg))
    if out.get("n_routed_experts") is None:
        raise ValueError("the config names no routed experts (n_routed_experts / num_local_experts / "
                         "num_experts): is this an MoE model?")
    for key in ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts"):
        if isinstance(out.get(key), list):  # Hunyuan writes some of these per layer
            values = set(out[key])
            if len(values) != 1:
                raise ValueError(f"{key} differs between layers ({sorted(values)}): moesim models one "
                                 "expert shape for every MoE layer")
            out[key] = values.pop()
    if not out.get("shared_expert_intermediate_size"):  # 0 or absent: Qwen3-Coder writes 0 for none
        out.pop("shared_expert_intermediate_size", None)
    elif not out.get("n_shared_experts"):
        out["n_shared_experts"] = 1  # Qwen's single gated shared expert
    out["n_group"] = out.get("n_group") or 1
    out["weight_dtype"] = _weight_dtype(cfg, quant)
    if str(((quant or {}).get("quantization") or {}).get("kv_cache_quant_algo") or "").upper() == "FP8":
        out["kv_cache_dtype"] = "fp8"  # ModelOpt checkpoints calibrated for an FP8 KV cache
    out["name"], out["source"] = name, f"Hugging Face config {name}"
    out.update(_attention_kinds(cfg, out))
    keep = set(ModelSpec.model_fields)
    return {k: v for k, v in out.items() if k in keep and v is not None}


def _attention_kinds(cfg: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Each block's attention kind: ``layer_types`` (sliding windows, Gated DeltaNet linear attention),
    Qwen3-Next's ``full_attention_interval``, or DeepSeek sparse attention everywhere (``index_topk``)."""
    types = list(out.get("layer_types") or cfg.get("layer_types") or ())
    if not types and out.get("attention_kinds"):  # a family adapter set them (DeepSeek-V4, Nemotron-H, Kimi)
        return {}
    n = int(out.get("num_hidden_layers") or 0)
    if not types and cfg.get("full_attention_interval") and cfg.get("linear_num_value_heads"):
        k = int(cfg["full_attention_interval"])  # Qwen3-Next: every k-th block full, the rest linear
        types = ["full_attention" if (i + 1) % k == 0 else "linear_attention" for i in range(n)]
    full = "dsa" if out.get("index_topk") and out.get("kv_lora_rank") else "full"
    kinds = [full if LAYER_TYPES[t] == "full" else LAYER_TYPES[t] for t in types]
    if "sliding" in kinds and not cfg.get("sliding_window"):
        kinds = [full if k == "sliding" else k for k in kinds]  # no window given: full attention
    res: dict[str, Any] = {}
    if any(k != "full" for k in kinds):
        res["attention_kinds"] = tuple(kinds)
    elif full == "dsa":
        res["attention_kinds"] = ("dsa",) * n
    if "sliding" in kinds:
        res["sliding_window"] = int(cfg["sliding_window"])
    return res


def _weight_dtype(cfg: dict[str, Any], quant: dict[str, Any] | None) -> str:
    q = cfg.get("quantization_config") or {}
    algo = str(q.get("quant_algo") or ((quant or {}).get("quantization") or {}).get("quant_algo") or "").lower()
    method = str(q.get("quant_method", "")).lower()
    if "mxfp4" in method or "mxfp4" in algo:  # gpt-oss: MXFP4 experts (OCP microscaling, 32-value blocks)
        return "mxfp4"
    if "fp4" in algo:  # NVIDIA ModelOpt checkpoints: quant_algo NVFP4 (16-value blocks, FP8 scales)
        return "nvfp4"
    if str(cfg.get("expert_dtype", "")).lower() == "fp4":
        return "fp4"
    if method == "fp8" or "fp8" in algo or "fp8" in str(q.get("fmt", "")).lower() or cfg.get("dtype") == "fp8":
        return "fp8"
    return "bf16"
