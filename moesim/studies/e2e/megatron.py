"""The Megatron-Bridge source (NVIDIA NeMo; data/SOURCES.md): one row of its published pre-training table ->
one moesim training scenario, and the simulated throughput beside the measured one.

Mapping:
- ``system`` picks the GPU (DGX-GB300 -> ``gb300``, DGX-GB200 -> ``gb200``, DGX-B200 -> ``b200``,
  DGX-H100 -> ``h100``), ``model`` the catalogue model, ``precision`` the GEMMs' format (BF16 -> ``bf16``,
  FP8-CS / FP8-MX -> ``fp8`` weights, dense ones too);
- Megatron's data-parallel size is gpus / (tp x pp x cp), and its expert-parallel groups of ``ep`` GPUs
  sit inside it; moesim simulates one of them per pipeline stage: ``ep`` x ``pp`` GPUs, a stage per node
  (an NVL72 domain holds a GB stage; DGX stages are ``ep / 8`` nodes). The other data-parallel replicas do
  the same work at the same time; their gradient all-reduce is not simulated (Megatron overlaps it with
  the last micro-batches' backward), but they share the distributed optimizer's state (``data_parallel``:
  dp / ep replicas, for memory);
- a micro-batch is ``mbs`` sequences of ``seq`` tokens per GPU (``tokens_per_gpu``, ``context_tokens``), a
  step ``ga`` of them (``accumulation_steps``; 1F1B over the stages when ``pp`` > 1, interleaved over ``vp``
  model chunks per stage when ``vp`` > 1: ``pipeline_virtual_stages``);
- the table's runs force-balance the tokens among experts (dropless): ``router.stats`` uniform;
- Megatron-Core's own time per MoE layer and pass: ``runtime.framework: megatron`` (its fitted
  ``layer_sync_s``, moesim.studies.e2e.training_fit);
- not modelled: Megatron FSDP (no row uses it).
A row is converted only when tp = cp = 1 and gbs = mbs x ga x dp (two published rows do not add up).
Measured: ``tokens_per_s_per_gpu``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "megatron-bridge-pretrain.csv"
GPU = {"DGX-GB300": "gb300", "DGX-GB200": "gb200", "DGX-B200": "b200", "DGX-H100": "h100"}
MODEL = {"DeepSeekV3": "deepseek-v3", "GPT OSS 120B": "gpt-oss-120b", "Qwen3_30B_a3B": "qwen3-30b-a3b",
         "Qwen3_235B_a22B": "qwen3-235b-a22b"}
NVL = ("DGX-GB300", "DGX-GB200")  # NVL72 racks: a stage of up to 72 GPUs in one NVLink domain


def read_rows(path: Path = DATA) -> list[dict[str, str]]:
    """The table's rows, as strings, in file order."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [{k: v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]


def why_not(row: dict[str, str]) -> str | None:
    """Why ``row`` cannot be converted (one line), or None."""
    n, tp, pp, cp, ep = (int(row[k]) for k in ("gpus", "tp", "pp", "cp", "ep"))
    if row["system"] not in GPU or row["model"] not in MODEL:
        return f"no catalogue GPU or model for {row['system']} / {row['model']}"
    if tp != 1 or cp != 1:
        return f"tp {tp}, cp {cp}: tensor and context parallel training are not expressed"
    dp = n // (tp * pp * cp)
    if int(row["gbs"]) != int(row["mbs"]) * int(row["ga"]) * dp:
        return f"gbs {row['gbs']} is not mbs x ga x dp = {row['mbs']} x {row['ga']} x {dp} (a misprint?)"
    if dp % ep or (row["system"] not in NVL and ep % 8):
        return f"ep {ep} does not divide the data-parallel size {dp} (or whole 8-GPU nodes)"
    return None


def scenario(row: dict[str, str], index: int) -> dict[str, Any]:
    """The moesim training scenario of ``row`` (see the module docstring), as plain data."""
    pp, ep, seq = int(row["pp"]), int(row["ep"]), int(row["seq"])
    dtype = "bf16" if row["precision"].upper() == "BF16" else "fp8"
    gpn = ep if row["system"] in NVL else 8
    dp = int(row["gpus"]) // pp  # tp = cp = 1 (why_not)
    wl: dict[str, Any] = {"mode": "training", "tokens_per_gpu": int(row["mbs"]) * seq, "context_tokens": seq,
                          "accumulation_steps": int(row["ga"]), "data_parallel": dp // ep}
    if pp > 1:
        wl["pipeline_stages"] = pp
        if int(row["vp"]) > 1:  # Megatron's virtual pipeline: the interleaved 1F1B schedule
            wl["pipeline_virtual_stages"] = int(row["vp"])
    return {"name": f"megatron-{index}-{GPU[row['system']]}-{MODEL[row['model']]}-{dtype}",
            "seed": index, "model": {"base": MODEL[row["model"]], "weight_dtype": dtype, "dense_weight_dtype": dtype},
            "cluster": {"gpu": GPU[row["system"]], "nodes": ep * pp // gpn, "gpus_per_node": gpn},
            "router": {"stats": {"kind": "uniform"}}, "workload": wl, "runtime": {"framework": "megatron"}}


def group(row: dict[str, str]) -> str:
    """The row's group: GPU / training / precision (BF16 or FP8)."""
    return f"{GPU.get(row['system'], row['system'])}/training/{'bf16' if row['precision'] == 'BF16' else 'fp8'}"


def measured(row: dict[str, str]) -> float:
    """Measured tokens per second per GPU."""
    return float(row["tokens_per_s_per_gpu"])
