"""The tiny scenarios whose summaries are pinned as golden JSON (tests/test_golden.py).

Regenerate after an intended change with ``python -m tests.golden.scenarios`` and list every changed
figure, before and after, in the commit.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

BASE = {"seed": 3, "model": {"base": "mixtral-8x7b", "num_hidden_layers": 4},
        "cluster": {"gpu": "h100", "nodes": 2, "gpus_per_node": 2},
        "router": {"stats": {"kind": "zipf", "alpha": 1.0}},
        "workload": {"mode": "prefill", "tokens_per_gpu": 64, "context_tokens": 64, "scope": "whole_model"},
        "comm": {"algorithm": "hierarchical"}}

GOLDEN = {
    "single": {},
    "two_micro_batches": {"workload": {"micro_batches": 2}},
    "training": {"workload": {"mode": "training", "scope": "moe_layers"},
                 "placement": {"kind": "contiguous", "redundant_experts": 4}},
    # group-limited routing (the top-down sampler's counter-based draws) and EPLB on its planning window
    "grouped": {"model": {"base": "deepseek-v3", "num_hidden_layers": 5},
                "placement": {"kind": "eplb", "redundant_experts": 4}},
}


def scenario(name: str) -> dict:
    """The raw scenario mapping of golden case ``name``."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in GOLDEN[name].items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def summary_json(name: str) -> str:
    from moesim import api
    from moesim.iteration.scenario import scenario_from_dict
    from moesim.present import output
    return output.to_json(api.run_scenario(scenario_from_dict(scenario(name))).doc)


if __name__ == "__main__":
    for case in GOLDEN:
        (HERE / f"{case}.json").write_text(summary_json(case))
        print("wrote", HERE / f"{case}.json")
