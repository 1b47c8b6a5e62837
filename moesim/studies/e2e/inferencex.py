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
- ``spec_method mtp``: DeepSeek's multi-token prediction with one draft token (the rows do not say how many;
  moesim's default acceptance, DeepSeek-V3 §5.4.3);
- the engine (``framework``) picks its profile: ``sglang`` and Dynamo's SGLang workers run ``sglang``, ``trt``
  and Dynamo's TensorRT-LLM workers ``trtllm`` (moesim.serve.engines, defaults cited in docs/sources.md);
- DeepSeek-R1 has DeepSeek-V3's architecture: the catalogue's ``deepseek-v3`` (FP8 weights).
Measured: ``median_ttft`` (s), ``median_tpot`` (s), ``tput_per_gpu`` (input + output tokens per s per GPU).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

GPUS_PER_NODE = 8
GPU = {"h200": "h200", "h100": "h100", "b200": "b200"}
ENGINE = {"sglang": "sglang", "dynamo-sglang": "sglang", "trt": "trtllm", "dynamo-trt": "trtllm"}


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
    if row["spec_method"].strip() == "mtp":
        serving["mtp"] = {"draft_tokens": 1}
    name = f"inferencex-{index:03d}-{row['framework']}-{row['hardware']}-{total}gpu-isl{isl}-osl{osl}-conc{conc}"
    return {"name": name, "seed": 1, "model": "deepseek-v3",
            "cluster": {"gpu": GPU[row["hardware"]], "nodes": -(-total // GPUS_PER_NODE),
                        "gpus_per_node": GPUS_PER_NODE},
            "workload": {"mode": "decode", **workload}, "serving": serving}


def measured(row: dict[str, str]) -> dict[str, float]:
    """The row's measured medians and throughput: ttft_s, tpot_s, tokens_per_s_per_gpu (input + output)."""
    return {"ttft_s": float(row["median_ttft"]), "tpot_s": float(row["median_tpot"]),
            "tokens_per_s_per_gpu": float(row["tput_per_gpu"])}


def group(row: dict[str, str]) -> str:
    """The row's group: GPU, engine, aggregated or disaggregated, MTP or not."""
    shape = "disagg" if row["disagg"].strip().lower() == "true" else "agg"
    mtp = "mtp" if row["spec_method"].strip() == "mtp" else "no-mtp"
    return f"{row['hardware']}/{ENGINE.get(row['framework'].strip(), row['framework'])}/{shape}/{mtp}"
