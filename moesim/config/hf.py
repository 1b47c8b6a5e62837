"""Read a model's shape from a Hugging Face ``config.json`` (DeepSeek, Mixtral, Qwen, Llama 4, OLMoE ...).

Each family names the same quantity differently; everything is mapped onto DeepSeek's key names.
"""

from __future__ import annotations

from typing import Any

from moesim.config.schema import ModelSpec

# other families' names -> ours
ALIASES = {
    "num_local_experts": "n_routed_experts",  # Mixtral, Llama 4
    "num_experts": "n_routed_experts",  # Qwen2-MoE, Qwen3-MoE, OLMoE
    "decoder_sparse_step": "moe_layer_freq",  # Qwen2-MoE
    "interleave_moe_layer_step": "moe_layer_freq",  # Llama 4
}
_TOPK_METHOD = {"noaux_tc": "sum_top2", "group_limited_greedy": "max", "greedy": "max"}


def normalise_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """Rename other families' keys to ours; keeps unknown keys (the schema rejects them)."""
    out = {ALIASES.get(k, k): v for k, v in raw.items()}
    if "moe_intermediate_size" not in out and "intermediate_size" in out and "n_routed_experts" in out:
        out["moe_intermediate_size"] = out.pop("intermediate_size")  # Mixtral: every FFN is an expert
    return out


def from_hf_config(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """Map a HF config.json mapping onto ModelSpec fields; keys moesim does not model are ignored."""
    if isinstance(cfg.get("text_config"), dict):  # Llama 4 nests the language model
        cfg = cfg["text_config"]
    out = normalise_keys(cfg)
    if out.get("n_routed_experts") is None:
        raise ValueError("the config names no routed experts (n_routed_experts / num_local_experts / "
                         "num_experts): is this an MoE model?")
    if out.get("shared_expert_intermediate_size") and not out.get("n_shared_experts"):
        out["n_shared_experts"] = 1  # Qwen's single gated shared expert
    if out.get("n_shared_experts") and "shared_expert_intermediate_size" not in out:
        if "intermediate_size_mlp" not in out and cfg.get("model_type", "").startswith("llama4"):
            out["shared_expert_intermediate_size"] = out["moe_intermediate_size"]
    if out.get("topk_method") in _TOPK_METHOD:
        out["group_score"] = _TOPK_METHOD[out["topk_method"]]
    out["n_group"] = out.get("n_group") or 1
    out["weight_dtype"] = _weight_dtype(cfg)
    out["name"], out["source"] = name, f"Hugging Face config {name}"
    keep = set(ModelSpec.model_fields)
    return {k: v for k, v in out.items() if k in keep and v is not None}


def _weight_dtype(cfg: dict[str, Any]) -> str:
    quant = cfg.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower()
    if method == "fp8" or "fp8" in str(quant.get("fmt", "")).lower():
        return "fp8"
    if "mxfp4" in method:
        return "fp4"
    return "bf16"
