"""Measurement grids. ``quick`` finishes in well under a minute on a 2-core CPU; ``full`` in under 15.

Token counts include 0-adjacent (1), off-tile (7, 33, 127, 511) and power-of-two sizes; expert vectors
include uniform, skewed (Zipf) and mostly-empty cases; shapes and dtypes vary. Held-out validation
configurations (moesim/calibrate/validate.py) use token counts, skews and a shape that are not in these grids.
"""

from __future__ import annotations

GRIDS = {
    # format and correctness check only (tests): seconds, not a usable profile
    "smoke": {
        "dtypes": ["float32"],
        "expert_shapes": [(64, 64)],
        "expert_tokens": [1, 16, 64],
        "vector": {"local_experts": [4], "copies": [64], "skews": [0.0]},
        "router": {"shapes": [(64, 8)], "tokens": [16, 64]},
        "permute": {"hidden": [64], "copies": [64, 256]},
        "all_to_all": {"bytes": [1024, 65536], "uneven": [False, True]},
        "attention": {"shapes": [(4, 32, 4)], "prefill_seq": [64, 128], "prefill_batch": [1, 2],
                      "decode_batch": [2], "decode_context": [128, 512]},
    },
    "quick": {
        "dtypes": ["float32"],
        "expert_shapes": [(256, 256), (512, 512)],
        "expert_tokens": [1, 7, 64, 256, 1024],
        "vector": {"local_experts": [8], "copies": [512, 4096], "skews": [0.0, 1.2]},
        "router": {"shapes": [(256, 16), (512, 64)], "tokens": [64, 512, 2048]},
        "permute": {"hidden": [256, 512], "copies": [128, 2048, 16384]},
        "all_to_all": {"bytes": [4096, 262144, 4194304], "uneven": [False, True]},
        "attention": {"shapes": [(8, 64, 8)], "prefill_seq": [128, 512], "prefill_batch": [1, 2],
                      "decode_batch": [4], "decode_context": [256, 2048]},
    },
    "full": {
        "dtypes": ["float32", "bfloat16"],
        "expert_shapes": [(256, 256), (256, 512), (512, 256), (512, 512), (1024, 512), (512, 1024)],
        "expert_tokens": [1, 2, 7, 16, 33, 64, 127, 256, 511, 1024, 2048],
        # BF16 GEMMs run ~85x slower than FP32 on CPUs without AVX512-BF16 (measured here: 2048x1024x512
        # took 2.3 s vs 0.027 s), so BF16 gets a smaller sub-grid
        "limits": {"bfloat16": {"shapes": [(256, 256), (512, 512)], "tokens": [1, 7, 33, 128]}},
        "vector": {"local_experts": [4, 8, 16], "copies": [256, 2048, 8192], "skews": [0.0, 1.2, 2.5]},
        "router": {"shapes": [(256, 16), (512, 64), (1024, 64), (512, 128)],
                   "tokens": [16, 64, 256, 1024, 4096]},
        "permute": {"hidden": [256, 512, 1024],
                    "copies": [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]},
        "all_to_all": {"bytes": [1024, 16384, 131072, 1048576, 4194304, 16777216, 33554432],
                       "uneven": [False, True]},
        # (heads, head_dim, kv_heads): MHA and GQA; prefill tokens = batch x seq; decode over a KV cache
        "attention": {"shapes": [(8, 64, 8), (16, 64, 4), (16, 128, 16)], "prefill_seq": [128, 256, 512, 1024],
                      "prefill_batch": [1, 2, 4], "decode_batch": [1, 4, 16],
                      "decode_context": [256, 1024, 2048, 4096]},
    },
    # one GPU (H100/H200), BF16 and FP8 expert GEMMs at real model shapes; finishes in a few minutes
    # (calibrate/gpu.sh: the prepared device run). all_to_all needs two GPUs: skipped on one
    "gpu": {
        "dtypes": ["bfloat16"],
        "fp8_dtypes": ["float8_e4m3fn"],
        # DeepSeek-V3, Qwen3-235B, Mixtral-8x7B, Qwen3-30B-style and Qwen2-57B-style experts
        "expert_shapes": [(7168, 2048), (4096, 1536), (4096, 14336), (2048, 768), (3584, 2560)],
        "expert_tokens": [1, 2, 8, 16, 33, 64, 127, 256, 511, 1024, 2048, 4096, 8192],
        "vector": {"local_experts": [8, 32], "copies": [1024, 16384], "skews": [0.0, 1.2]},
        "router": {"shapes": [(7168, 256), (4096, 128), (4096, 8)], "tokens": [16, 256, 1024, 4096, 16384]},
        "permute": {"hidden": [2048, 4096, 7168],
                    "copies": [64, 512, 4096, 16384, 65536, 131072]},
        "all_to_all": {"bytes": [65536, 1048576, 16777216, 134217728], "uneven": [False, True]},
        "attention": {"shapes": [(32, 128, 8), (64, 128, 4)], "prefill_seq": [512, 1024, 2048, 4096, 8192],
                      "prefill_batch": [1, 2], "decode_batch": [1, 8, 32, 128],
                      "decode_context": [1024, 4096, 16384, 32768],
                      # MLA decode (heads, kv_lora_rank, qk_rope_head_dim): DeepSeek-V3 and a 16-head variant
                      "mla": [(128, 512, 64), (16, 512, 64)]},
        "reps": 20,
    },
}

# the smoke grid's code paths on the GPU dtypes: `--device cuda --dry-run` checks the GPU path on a CPU (tests)
GRIDS["gpu-smoke"] = {
    **GRIDS["smoke"],
    "dtypes": ["bfloat16"],
    "fp8_dtypes": ["float8_e4m3fn"],
    "attention": {**GRIDS["smoke"]["attention"], "prefill_batch": [1], "mla": [(4, 32, 8)]},
    "reps": 5,
}
