"""The InferenceX source (SemiAnalysis; shared reference ``e2e/README.md``): one exported row -> one moesim
serving scenario, the deployment as the engine ran it.

Mapping (per side of a disaggregated row, or the aggregated engine):
- an engine instance is ``tp`` GPUs; ``dp_attention`` true runs attention data-parallel over them
  (``attention_tp: 1``), false tensor-parallel (``attention_tp: tp``);
- ``ep`` is the expert-parallel size inside the instance: ``ep 1`` shards every expert over the TP group
  (``moe_tp: tp``), ``ep tp`` places whole experts (``moe_tp: 1``);
- aggregated rows run one engine of ``tp`` GPUs: the export's ``num_decode_gpu`` there is ``tp x ep`` (64 for
  TensorRT-LLM's TP8-EP8 rows), which the rows' own figures rule out as GPU counts (row 17: 8 requests in
  flight at a 14.7 ms TPOT emit 544 tokens/s, its 65 output tokens/s per GPU over 8 GPUs, not 64);
  disaggregated sides run ``num_workers`` instances of ``tp`` GPUs;
- the load is closed-loop at ``conc`` requests in flight, prompt and answer lengths uniform between 80% and
  100% of ``isl`` / ``osl`` (the benchmark's random dataset, range ratio 0.8);
- the engine (``framework``) picks its profile: ``sglang`` and Dynamo's SGLang workers run ``sglang``, ``trt``
  and Dynamo's TensorRT-LLM workers ``trtllm`` (moesim.serve.engines, defaults cited in docs/sources.md), and
  the flags InferenceX launched it with override the profile (``engine_flags``): aggregated rows from its
  launch scripts (benchmarks/single_node/fixed_seq_len/dsr1_fp8_h200{,_mtp,_trt,_trt_mtp}.sh), disaggregated
  rows from the recipe each ran (data/inferencex-dsr1-h200-recipes.csv, made by
  scenarios/inferencex/recipes.py from InferenceX's repository): token budgets, running sequences, the
  prefix cache (off in every script), MTP draft counts (SGLang: EAGLE with 2 steps; TensorRT-LLM: 3
  next-n layers, 1 with DP attention, or the recipe's) and TensorRT-LLM's attention-DP balance (60
  iterations);
- DeepSeek-R1 has DeepSeek-V3's architecture: the catalogue's ``deepseek-v3`` (FP8 weights), with an FP8 KV
  cache on TensorRT-LLM (its scripts and recipes set ``kv_cache_config.dtype: fp8``; SGLang's keep BF16);
- SGLang's rows run on the ``h200-sglang`` silicon profile (its kernels as measured), the others on the H200's
  datasheet roofline (``SILICON``).
Measured: ``median_ttft`` (s), ``median_tpot`` (s), ``tput_per_gpu`` (input + output tokens per s per GPU).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

GPUS_PER_NODE = 8
RECIPES = Path(__file__).parent / "data" / "inferencex-dsr1-h200-recipes.csv"
GPU = {"h200": "h200", "h100": "h100", "b200": "b200"}
ENGINE = {"sglang": "sglang", "dynamo-sglang": "sglang", "trt": "trtllm", "dynamo-trt": "trtllm"}
# kernels measured for the engine, where a silicon profile has them (aiconfigurator's SGLang tables on H200:
# docs/calibration.md); other engines run the datasheet roofline of the GPU
SILICON = {("h200", "sglang"): "h200-sglang"}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The export's rows, in file order."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _side(row: dict[str, str], side: str) -> dict[str, Any]:
    tp, ep = int(row[f"{side}_tp"]), int(row[f"{side}_ep"])
    dp = row[f"{side}_dp_attention"].strip().lower() == "true"
    return {"ep_gpus": tp, "attention_tp": 1 if dp else tp, "moe_tp": tp // ep}


def scenario(row: dict[str, str], index: int) -> dict[str, Any]:
    """The moesim scenario (plain data) of one exported row."""
    disagg = row["disagg"].strip().lower() == "true"
    pre, dec = _side(row, "prefill"), _side(row, "decode")
    if disagg:
        gpus = {s: int(row[f"{s}_num_workers"]) * int(row[f"{s}_tp"]) for s in ("prefill", "decode")}
        deployment = {"kind": "disaggregated", "prefill": {"gpus": gpus["prefill"], **pre},
                      "decode": {"gpus": gpus["decode"], **dec}}
        total, workload = gpus["prefill"] + gpus["decode"], {}
    else:
        total = int(row["decode_tp"])  # one engine of tp GPUs (num_decode_gpu is tp x ep in the export)
        deployment = {"kind": "aggregated", "ep_gpus": dec["ep_gpus"]}
        workload = {"attention_tp": dec["attention_tp"], "moe_tp": dec["moe_tp"]}
    conc, isl, osl = int(row["conc"]), int(row["isl"]), int(row["osl"])
    serving: dict[str, Any] = {
        "load": {"concurrency": conc}, "requests": max(10 * conc, 64),
        "input_tokens": {"kind": "random", "value": isl, "range_ratio": 0.8},
        "output_tokens": {"kind": "random", "value": osl, "range_ratio": 0.8},
        "deployment": deployment}
    engine = ENGINE.get(row["framework"].strip())
    if engine is not None:
        serving["engine"] = engine
    flags = engine_flags(row)
    if flags.get("scheduler"):
        serving["scheduler"] = flags["scheduler"]
    for side in ("prefill", "decode"):
        if disagg and flags.get(side):
            deployment[side]["scheduler"] = flags[side]
    if row["spec_method"].strip() == "mtp":
        serving["mtp"] = {"draft_tokens": flags.get("drafts") or 1}
    name = f"inferencex-{index:03d}-{row['framework']}-{row['hardware']}-{total}gpu-isl{isl}-osl{osl}-conc{conc}"
    gpu = SILICON.get((row["hardware"], engine), GPU[row["hardware"]])
    # TensorRT-LLM's launch scripts and recipes all set kv_cache_config.dtype fp8; SGLang's leave the KV cache
    # at the model's BF16 (no --kv-cache-dtype)
    model = {"base": "deepseek-v3", "kv_cache_dtype": "fp8"} if engine == "trtllm" else "deepseek-v3"
    return {"name": name, "seed": 1, "model": model,
            "cluster": {"gpu": gpu, "nodes": -(-total // GPUS_PER_NODE), "gpus_per_node": GPUS_PER_NODE},
            "workload": {"mode": "decode", **workload}, "serving": serving}


def _ceil64(x: int) -> int:
    return (x + 63) // 64 * 64


def engine_flags(row: dict[str, str]) -> dict[str, Any]:
    """What InferenceX launched the row's engine with, as scheduler fields (per GPU, or ``max_running`` per
    instance) and MTP drafts: {scheduler, prefill, decode, drafts}."""
    fw, tp = row["framework"].strip(), int(row["decode_tp"])
    isl, osl, conc = int(row["isl"]), int(row["osl"]), int(row["conc"])
    mtp = row["spec_method"].strip() == "mtp"
    dp = row["decode_dp_attention"].strip().lower() == "true"
    if fw == "sglang":  # dsr1_fp8_h200{,_mtp}.sh: TP8, radix cache off, 32k chunks, 512 or 256 running
        running = 512 if (isl, osl) == (1024, 1024) else 256
        return {"scheduler": {"token_budget": 32768 // tp, "max_running": running, "prefix_cache": False},
                "drafts": 2 if mtp else 0}
    if fw == "trt":  # dsr1_fp8_h200_trt{,_mtp}.sh: max_num_tokens per rank, MTP 3 (1 with DP attention)
        drafts = (1 if dp else 3) if mtp else 0
        rank_batch = max(1, conc // tp) if dp else conc
        tokens = (_ceil64((drafts + 1) * rank_batch + isl + 64) if mtp else
                  max(8192, _ceil64(conc + isl + 64)))
        sched = {"token_budget": tokens if dp else tokens // tp, "prefix_cache": False,
                 "kv_memory_fraction": 0.75, "dp_balance_timeout_iters": 60 if dp else 0}
        return {"scheduler": sched, "drafts": drafts}
    rec = recipe(row)
    if rec is None:
        return {}
    per_rank = fw == "dynamo-trt"  # TensorRT-LLM counts per rank; SGLang per instance

    def side(name: str) -> dict[str, Any]:
        ranks = tp if per_rank and rec[f"{name}_dp"] == "True" else 1
        out: dict[str, Any] = {"max_running": int(rec[f"{name}_max_batch"]) * ranks, "prefix_cache": False}
        if rec[f"{name}_max_tokens"] and name == "prefill":
            t = int(rec[f"{name}_max_tokens"])
            out["token_budget"] = t if ranks > 1 else t // tp
            out["chunked_prefill"] = rec[f"{name}_chunked"] == "True"
        if int(rec["decode_balance_timeout_iters"]) and name == "decode":
            out["dp_balance_timeout_iters"] = int(rec["decode_balance_timeout_iters"])
        return out

    return {"prefill": side("prefill"), "decode": side("decode"), "drafts": int(rec["decode_drafts"]),
            "recipe": rec["recipe"]}


def recipe(row: dict[str, str]) -> dict[str, str] | None:
    """The recipe a disaggregated row ran: same engine, lengths, MTP, worker counts and attention layouts;
    of several, the one whose concurrency (per decode worker for TensorRT-LLM's) is nearest the row's."""
    spec = "mtp" if row["spec_method"].strip() == "mtp" else "none"
    keys = (("framework", "framework"), ("isl", "isl"), ("osl", "osl"), ("prefill_workers", "prefill_num_workers"),
            ("decode_workers", "decode_num_workers"), ("decode_dp", "decode_dp_attention"))
    found = [r for r in read_rows(RECIPES) if r["spec"] == spec and all(
        r[a].strip().lower() == row[b].strip().lower() for a, b in keys)]
    if not found:
        return None
    conc = int(row["conc"])

    def distance(r: dict[str, str]) -> float:
        per = int(r["decode_workers"]) if r["framework"] == "dynamo-trt" else 1
        return min(abs(math.log(int(c) * per / conc)) for c in r["conc_list"].split())

    return min(found, key=distance)


def measured(row: dict[str, str]) -> dict[str, float]:
    """The row's measured medians and throughput: ttft_s, tpot_s, tokens_per_s_per_gpu (input + output)."""
    return {"ttft_s": float(row["median_ttft"]), "tpot_s": float(row["median_tpot"]),
            "tokens_per_s_per_gpu": float(row["tput_per_gpu"])}


def group(row: dict[str, str]) -> str:
    """The row's group: GPU, engine, aggregated or disaggregated, MTP or not."""
    shape = "disagg" if row["disagg"].strip().lower() == "true" else "agg"
    mtp = "mtp" if row["spec_method"].strip() == "mtp" else "no-mtp"
    return f"{row['hardware']}/{ENGINE.get(row['framework'].strip(), row['framework'])}/{shape}/{mtp}"
