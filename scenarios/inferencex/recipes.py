"""The engine settings of InferenceX's disaggregated DeepSeek-R1 H200 rows, from its repository: which recipe
each search-space entry ran (``.github/configs/nvidia-master.yaml`` as of the rows' date) and what the recipe
sets (``benchmarks/multi_node/srt-slurm-recipes/dsr1/{trtllm,sglang}/h200-fp8``). Writes
moesim/studies/e2e/data/inferencex-dsr1-h200-recipes.csv, which the converter (moesim.studies.e2e.inferencex)
reads; run it again to refresh that file.

Usage: python scenarios/inferencex/recipes.py INFERENCEX_GIT_DIR [--master-before 2026-05-20]
INFERENCEX_GIT_DIR: a clone (or bare mirror) of github.com/SemiAnalysisAI/InferenceX.

Per recipe, per side: max_batch (sequences a scheduler runs: TensorRT-LLM's max_batch_size per rank, SGLang's
max-running-requests per instance), max_tokens (TensorRT-LLM's max_num_tokens per rank; SGLang's
chunked-prefill-size per instance), chunked (TensorRT-LLM's enable_chunked_prefill; SGLang chunks always),
drafts (MTP: TensorRT-LLM's num_nextn_predict_layers, SGLang's speculative-num-steps with top-k 1), and
TensorRT-LLM's attention-DP balance (attention_dp_config: timeout_iters when enable_balance).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[2] / "moesim/studies/e2e/data/inferencex-dsr1-h200-recipes.csv"
MASTER = ".github/configs/nvidia-master.yaml"
RECIPES = "benchmarks/multi_node/srt-slurm-recipes/dsr1/{engine}/h200-fp8/{seq}/disagg/{spec}/{name}"
FIELDS = ("framework", "isl", "osl", "spec", "conc_list", "prefill_workers", "prefill_dp", "decode_workers",
          "decode_dp", "prefill_max_batch", "prefill_max_tokens", "prefill_chunked", "decode_max_batch",
          "decode_max_tokens", "decode_drafts", "decode_balance_timeout_iters", "recipe", "commit")


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout


def latest(repo: str, path: str) -> tuple[str, str]:
    """(commit, text) of the newest version of ``path`` in any branch."""
    for c in git(repo, "log", "--all", "--format=%H", "--", path).split():
        try:
            return c, git(repo, "show", f"{c}:{path}")
        except subprocess.CalledProcessError:  # deleted in that commit: an older one holds it
            continue
    raise FileNotFoundError(path)


def trt_side(cfg: dict) -> dict:
    spec = cfg.get("speculative_config") or {}
    adp = cfg.get("attention_dp_config") or {}
    return {"max_batch": cfg.get("max_batch_size"), "max_tokens": cfg.get("max_num_tokens"),
            "chunked": bool(cfg.get("enable_chunked_prefill", False)),
            "drafts": spec.get("num_nextn_predict_layers", 0),
            "balance": adp.get("timeout_iters", 0) if adp.get("enable_balance") else 0}


def sglang_side(cfg: dict) -> dict:
    return {"max_batch": cfg.get("max-running-requests"), "max_tokens": cfg.get("chunked-prefill-size"),
            "chunked": True, "drafts": cfg.get("speculative-num-steps") or 0, "balance": 0}


def rows(repo: str, before: str) -> list[dict]:
    commit = git(repo, "log", "--all", f"--before={before}", "--format=%H", "-1", "--", MASTER).strip()
    master = yaml.safe_load(git(repo, "show", f"{commit}:{MASTER}"))
    out = []
    for key, engine in (("dsr1-fp8-h200-dynamo-trt", "trtllm"), ("dsr1-fp8-h200-dynamo-sglang", "sglang")):
        for sc in master[key]["scenarios"]["fixed-seq-len"]:
            seq = f"{sc['isl'] // 1024}k{sc['osl'] // 1024}k"
            for s in sc["search-space"]:
                sets = (s["prefill"].get("additional-settings") or []) + (s["decode"].get("additional-settings") or [])
                name = next((a.split("/")[-1] for a in sets if "CONFIG_FILE" in a), None) or s["recipe"].split("/")[-1]
                spec = "mtp" if s.get("spec-decoding") == "mtp" else "stp"
                c, text = latest(repo, RECIPES.format(engine=engine, seq=seq, spec=spec, name=name))
                doc = yaml.safe_load(text)["backend"]
                cfg = doc["trtllm_config"] if engine == "trtllm" else doc["sglang_config"]
                side = trt_side if engine == "trtllm" else sglang_side
                p, d = side(cfg["prefill"]), side(cfg["decode"])
                out.append({"framework": f"dynamo-{'trt' if engine == 'trtllm' else 'sglang'}", "isl": sc["isl"],
                            "osl": sc["osl"], "spec": "mtp" if spec == "mtp" else "none",
                            "conc_list": " ".join(map(str, s["conc-list"])),
                            "prefill_workers": s["prefill"]["num-worker"],
                            "prefill_dp": bool(s["prefill"].get("dp-attn")),
                            "decode_workers": s["decode"]["num-worker"], "decode_dp": bool(s["decode"].get("dp-attn")),
                            "prefill_max_batch": p["max_batch"], "prefill_max_tokens": p["max_tokens"],
                            "prefill_chunked": p["chunked"], "decode_max_batch": d["max_batch"],
                            "decode_max_tokens": d["max_tokens"], "decode_drafts": d["drafts"],
                            "decode_balance_timeout_iters": d["balance"], "recipe": name, "commit": c[:12]})
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    before = args[args.index("--master-before") + 1] if "--master-before" in args else "2026-05-20"
    table = rows(args[0], before)
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows(table)
    print(f"wrote {OUT} ({len(table)} recipes)")
