"""Speed and memory of `moesim run` at the issue's three scales (DeepSeek-V3, all 58 MoE layers).

Each case runs in a fresh process so peak memory (max RSS) is its own. Prints one line per case.
Usage: python bench/bench_scale.py [a|b|c ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    # name: (target seconds, overrides on the decode/prefill example scenarios)
    "a": (2.0, "scenarios/deepseek-v3-decode-h800.yaml", []),
    "b": (10.0, "scenarios/deepseek-v3-prefill-h800.yaml", ["workload.tokens_per_gpu=16384"]),
    "c": (60.0, "scenarios/deepseek-v3-prefill-h800.yaml",
          ["cluster.nodes=128", "placement.redundant_experts=768", "workload.tokens_per_gpu=4096"]),
}
CHILD = """
import json, resource, sys, time
from moesim import api
t = time.perf_counter()
r = api.run(sys.argv[1], sys.argv[2:])
el = time.perf_counter() - t
print(json.dumps({"seconds": el, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "iteration_time_s": r.summary["iteration_time_s"], "fidelity": r.summary["fidelity"],
                  "gpus": r.summary["nodes"] * r.summary["gpus_per_node"]}))
"""


def main(names: list[str]) -> None:
    for name in names or list(CASES):
        target, scenario, overrides = CASES[name]
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / scenario), *overrides],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ok = "met" if r["seconds"] <= target and r["peak_rss_bytes"] <= 4e9 else "NOT met"
        print(f"case {name}: {r['gpus']} GPUs  {r['seconds']:.2f} s (target <= {target:.0f} s)  "
              f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB  fidelity {r['fidelity']}  [{ok}]", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
