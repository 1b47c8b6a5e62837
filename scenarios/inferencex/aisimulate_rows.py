"""Run the shipped InferenceX rows through NVIDIA's AISimulate (the peer of docs/e2e-validation.md) and write
its predictions as CSV: row, median TTFT (s), median TPOT (s), tokens/s per GPU (input + output), wall s.

    pip install aisimulate==0.13.0.dev202610270000000085      # the newest complete wheel on the index
    python scenarios/inferencex/aisimulate_rows.py OUT.csv [ROWS]   # ROWS: 1,5,9 (default: all)

Each row as AISimulate's ``predict`` takes it: DeepSeek-R1 on ``h200_sxm``, the row's engine (sglang or
trtllm), per worker tensor / moe_tensor / moe_expert / attention_data sizes and the replicas of each side,
closed-loop ``concurrency``, 10 x conc requests (at least 64) as moesim runs. Its synthetic source takes one
length, so prompts and answers are the benchmark's mean draw (0.9 x isl, 0.9 x osl; moesim draws them
uniformly between 80% and 100%). MTP: one draft token accepted with the probability moesim assumes (0.85),
because AISimulate needs an explicit acceptance.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from moesim.studies.e2e.inferencex import ENGINE, read_rows
from moesim.studies.e2e.run import INFERENCEX

ACCEPTANCE = 0.85


def _worker(row: dict[str, str], side: str) -> dict:
    tp, ep = int(row[f"{side}_tp"]), int(row[f"{side}_ep"])
    dp = row[f"{side}_dp_attention"].strip().lower() == "true"
    par = {"tensor": 1 if dp else tp, "attention_data": tp if dp else 1, "moe_tensor": tp // ep, "moe_expert": ep}
    if row["disagg"].strip().lower() == "true":
        par["replicas"] = int(row[f"{side}_num_workers"])
    return {"parallelism": par}


def config(row: dict[str, str]) -> dict:
    """AISimulate's predict config for one row."""
    disagg = row["disagg"].strip().lower() == "true"
    conc = int(row["conc"])
    engine = {"model": "deepseek-ai/DeepSeek-R1", "hardware": "h200_sxm", "backend": ENGINE[row["framework"]],
              "mode": "disaggregated" if disagg else "aggregated",
              "workers": ({"prefill": _worker(row, "prefill"), "decode": _worker(row, "decode")} if disagg else
                          {"aggregated": _worker(row, "decode")})}
    if row["spec_method"].strip() == "mtp":
        engine.update({"nextn": 1, "nextn_accepted": ACCEPTANCE})
    return {"traffic": {"source": {"type": "synthetic", "input_tokens": round(0.9 * int(row["isl"])),
                                   "output_tokens": round(0.9 * int(row["osl"]))},
                        "load": {"type": "concurrency", "concurrency": conc},
                        "stop": {"requests": max(10 * conc, 64)}},
            "engine": engine}


def gpus(row: dict[str, str]) -> int:
    if row["disagg"].strip().lower() == "true":
        return sum(int(row[f"{s}_num_workers"]) * int(row[f"{s}_tp"]) for s in ("prefill", "decode"))
    return int(row["decode_tp"])


def predict(row: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "row.yaml"
        cfg.write_text(yaml.safe_dump(config(row)))
        t0 = time.perf_counter()
        out = subprocess.run(["aisimulate", "predict", "-c", str(cfg), "--output-dir", str(Path(tmp) / "o"),
                              "--overwrite", "--format", "json"], capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}",
                "wall_s": wall}
    doc = json.loads(out.stdout)
    tput = (doc["input_throughput_tok_s"] + doc["output_throughput_tok_s"]) / gpus(row)
    return {"ttft_s": doc["median_ttft_ms"] / 1e3, "tpot_s": doc["median_tpot_ms"] / 1e3,
            "tokens_per_s_per_gpu": tput, "wall_s": wall}


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    rows = read_rows(INFERENCEX)
    wanted = {int(x) for x in sys.argv[2].split(",")} if len(sys.argv) == 3 else set(range(1, len(rows) + 1))
    with open(sys.argv[1], "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["row", "ttft_s", "tpot_s", "tokens_per_s_per_gpu", "wall_s", "error"])
        w.writeheader()
        for i, row in enumerate(rows, start=1):
            if i in wanted:
                res = predict(row)
                w.writerow({"row": i, **res})
                fh.flush()
                print(i, res, flush=True)
