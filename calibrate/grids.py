"""Measurement grids. ``quick`` finishes in well under a minute on a 2-core CPU; ``full`` in under 15.

Token counts include 0-adjacent (1), off-tile (7, 33, 127, 511) and power-of-two sizes; expert vectors
include uniform, skewed (Zipf) and mostly-empty cases; shapes and dtypes vary. Held-out validation
configurations (calibrate/validate.py) use token counts, skews and a shape that are not in these grids.
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
}
