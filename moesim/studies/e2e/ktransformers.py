"""KTransformers' published DeepSeek-V3 rows (data/ktransformers-dsv3.csv) → offload scenarios: local
inference with every routed expert on the host CPU and the rest of the model on one GPU.

Source: kvcache-ai/ktransformers ``doc/en/DeepseekR1_V3_tutorial.md`` (commit 034a1163), tables "V0.2
Benchmark Results" and "V0.2.1 Benchmark Results": DeepSeek-V3 in GGUF Q4_K_M, Xeon Gold 6454S (one socket,
or both with the USE_NUMA build), RTX 4090 D (V0.2) or RTX 4090 (V0.2.1's table), 8 routed experts per token
or 6 ("selectively using 6 experts"), prefill and decode tokens/s after warm-up. Each row becomes:
- model ``deepseek-v3``, weights ``q4_k_m`` (4.84 bits a weight, moesim.model.moe), ``num_experts_per_tok``
  as the row;
- one GPU (``rtx-4090d`` / ``rtx-4090``), host ``ktransformers-6454s-4090d`` (one socket) or
  ``ktransformers-2x6454s`` (both);
- KTransformers' placement: attention, KV cache, shared expert and dense layers on the GPU, every routed
  expert on the CPU (``plan: host``, ``miss: cpu``; its ``--kt-num-gpu-experts`` default 0);
- router ``uniform``: DeepSeek-V3's auxiliary-loss-free balancing keeps expert loads even (DeepSeek-V3
  technical report, section 2.1.2), so a prefill pass touches nearly every expert of a layer;
- prefill: one pass over the prompt; decode: 16 steps of one sequence at the KV length prompt + half the
  answer (300 tokens where the source does not say; its V0.2.1 table uses 300);
- ``offload.engine: ktransformers`` (the fitted terms, catalog/offload_engines.json);
- ``runtime.launch``: CUDA graphs in decode (local_chat's ``--use_cuda_graph``, on by default), eager
  launches in prefill (graphs are captured for decode only).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "ktransformers-dsv3.csv"
HOSTS = {"6454s": "ktransformers-6454s-4090d", "2x6454s": "ktransformers-2x6454s"}
SOCKETS = {"6454s": "1-socket", "2x6454s": "2-socket"}
ANSWER_TOKENS = 300  # where the source leaves the answer's length out (its V0.2.1 table uses 300)
DECODE_STEPS = 16


def read_rows(path: Path = DATA) -> list[dict[str, str]]:
    """The rows of the CSV, in file order."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def group(r: dict[str, str]) -> str:
    """``engine-version/gpu/sockets/mode``, e.g. ``ktransformers-0.2.1/rtx-4090/2-socket/decode``."""
    engine = f"{r['engine']}-{r['version']}" if r["version"] else r["engine"]
    return f"{engine}/{r['gpu']}/{SOCKETS.get(r['host'], r['host'])}/{r['mode']}"


def why_not(r: dict[str, str]) -> str | None:
    """Why a row cannot be converted (None when it can)."""
    if r["engine"] != "ktransformers":
        return (f"{r['engine']}'s placement (GPU layers, -ot) is not stated by the source, so its scenario "
                f"would be a guess")
    if r["host"] not in HOSTS:
        return f"host {r['host']!r} is not in the catalogue"
    return None


def measured(r: dict[str, str]) -> float:
    """Measured tokens/s (prefill: prompt tokens per second; decode: generated tokens per second)."""
    return float(r["measured_tokens_per_s"])


def scenario(r: dict[str, str], index: int) -> dict[str, Any]:
    """The moesim scenario of row ``index`` (1-based) as a dict (see the module docstring)."""
    prompt = int(r["prompt_tokens"])
    answer = int(r["output_tokens"]) if r["output_tokens"] else ANSWER_TOKENS
    k = int(r["experts_per_token"])
    if r["mode"] == "prefill":
        wl = {"mode": "prefill", "tokens_per_gpu": prompt, "context_tokens": prompt}
    else:
        wl = {"mode": "decode", "tokens_per_gpu": 1, "context_tokens": prompt + answer // 2}
    return {"name": f"ktransformers-row{index}", "seed": index,
            "model": {"base": "deepseek-v3", "weight_dtype": r["weights"], "num_experts_per_tok": k},
            "cluster": {"gpu": r["gpu"], "nodes": 1, "gpus_per_node": 1, "host": HOSTS[r["host"]]},
            "router": {"stats": {"kind": "uniform"}},
            "workload": wl,
            "offload": {"plan": "host", "cache": "static", "miss": "cpu", "steps": DECODE_STEPS,
                        "engine": r["engine"]},
            "runtime": {"launch": "eager" if r["mode"] == "prefill" else "cuda_graph"}}


def select(only: str | None = None, path: Path = DATA
           ) -> tuple[list[tuple[int, str, dict[str, str]]], list[dict[str, Any]]]:
    """The rows to run, (1-based number, group, row), whose group or number ``only`` names (all without it),
    and those of them that cannot be converted, each with why."""
    rows, skipped = [], []
    for i, r in enumerate(read_rows(path), start=1):
        g = group(r)
        if only and not (only in g or str(i) in only.split(",")):
            continue
        why = why_not(r)
        if why:
            skipped.append({"row": i, "group": g, "why": why})
        else:
            rows.append((i, g, r))
    return rows, skipped
