"""Turn rows of the InferenceX benchmark export (SemiAnalysis; see shared reference ``e2e/README.md``) into
moesim serving scenarios: the deployment each row measured, as engines ran it.

    python scenarios/inferencex/convert.py ROWS.csv OUT_DIR     # one YAML per row, named by its row number

Mapping (per side of a disaggregated row, or the aggregated engine):
- an engine instance is ``tp`` GPUs; ``dp_attention`` true runs attention data-parallel over them
  (``attention_tp: 1``), false tensor-parallel (``attention_tp: tp``);
- ``ep`` is the expert-parallel size inside the instance: ``ep 1`` shards every expert over the TP group
  (``moe_tp: tp``), ``ep tp`` places whole experts (``moe_tp: 1``);
- aggregated rows run ``num_gpu / tp`` instances; disaggregated sides ``num_workers`` instances of ``tp`` GPUs;
- the load is closed-loop at ``conc`` requests in flight, prompt and answer lengths uniform between 80% and
  100% of ``isl`` / ``osl`` (the benchmark's random dataset, range ratio 0.8);
- ``spec_method mtp``: DeepSeek's multi-token prediction with one draft token (the exported rows do not say
  how many; moesim's default acceptance, DeepSeek-V3 §5.4.3);
- DeepSeek-R1 has DeepSeek-V3's architecture: the catalogue's ``deepseek-v3`` (FP8 weights).
The engine (``framework``) and its image are kept in the scenario's name and source note only: moesim's
serving scheduler is the same for every engine until engine profiles land.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import yaml

GPUS_PER_NODE = 8
GPU = {"h200": "h200", "h100": "h100", "b200": "b200"}


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
        total = int(row["num_decode_gpu"])
        deployment = {"kind": "aggregated", "ep_gpus": dec["ep_gpus"]}
        workload = {"attention_tp": dec["attention_tp"], "moe_tp": dec["moe_tp"]}
    conc, isl, osl = int(row["conc"]), int(row["isl"]), int(row["osl"])
    serving: dict[str, Any] = {
        "load": {"concurrency": conc}, "requests": max(10 * conc, 64),
        "input_tokens": {"kind": "random", "value": isl, "range_ratio": 0.8},
        "output_tokens": {"kind": "random", "value": osl, "range_ratio": 0.8},
        "deployment": deployment}
    if row["spec_method"].strip() == "mtp":
        serving["mtp"] = {"draft_tokens": 1}
    name = f"inferencex-{index:03d}-{row['framework']}-{row['hardware']}-{total}gpu-isl{isl}-osl{osl}-conc{conc}"
    out = {"name": name, "seed": 1, "model": "deepseek-v3",
           "cluster": {"gpu": GPU[row["hardware"]], "nodes": -(-total // GPUS_PER_NODE),
                       "gpus_per_node": GPUS_PER_NODE},
           "workload": {"mode": "decode", **workload}, "serving": serving}
    return out


def convert(rows_csv: Path, out_dir: Path) -> list[Path]:
    """One scenario file per row of ``rows_csv`` in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with rows_csv.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=1):
            path = out_dir / f"row-{i:03d}.yaml"
            note = f"# InferenceX row {i}: {row['framework']} {row['image']} ({row['run_url']})\n"
            path.write_text(note + yaml.safe_dump(scenario(row, i), sort_keys=False), encoding="utf-8")
            paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    for p in convert(Path(sys.argv[1]), Path(sys.argv[2])):
        print(p)
