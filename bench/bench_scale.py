"""Speed and memory of `moesim run` at the issue's scales (DeepSeek-V3, all 58 MoE layers).

Each case runs in a fresh process so peak memory (max RSS) is its own. Prints one line per case, then the
same case on the closed-form floor (``sim.engine=bound``: no events, numpy only) with the ratio of the two
wall times and the floor's error on iteration time.
``--against REF`` also runs every case on git revision REF (a temporary worktree), alternating the two
``--repeat`` times, and prints the median of each and their ratio: a speed comparison inside one run on
one machine (absolute times on a shared machine are noisy; the ratio is the figure to read).
``--runs N`` runs each case N times (fresh processes) and prints the median and the range. ``--warm``
times a second run in the same process (numba's start-up and the kernels' loading paid by the first):
what each run of a sweep, a plan or a notebook costs.

Usage: python bench/bench_scale.py [a|b|c ...] [--against REF] [--repeat N] [--runs N] [--warm]
                                   [--set PATH=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    # name: (target seconds, overrides on the decode/prefill example scenarios)
    "a": (1.0, "scenarios/deepseek-v3-decode-h800.yaml", []),
    "b": (3.0, "scenarios/deepseek-v3-prefill-h800.yaml", ["workload.tokens_per_gpu=16384"]),
    "c": (60.0, "scenarios/deepseek-v3-prefill-h800.yaml",
          ["cluster.nodes=128", "placement.redundant_experts=768", "workload.tokens_per_gpu=4096"]),
    # 1,250 x 8 = 10,000 GPUs, one slot each (EPLB with 9,744 redundant experts)
    "10k": (20.0, "scenarios/deepseek-v3-decode-h800.yaml",
            ["cluster.nodes=1250", "placement.kind=eplb", "placement.redundant_experts=9744"]),
    "100k": (float("inf"), "scenarios/deepseek-v3-decode-h800.yaml",
             ["cluster.nodes=12500", "placement.kind=eplb", "placement.redundant_experts=99744",
              "sim.min_sampled_per_gpu=1"]),
}
MEMORY_TARGET = {"10k": 3e9, "100k": 8e9}
CHILD = """
import json, os, resource, sys, time
from moesim import api
try:  # as the CLI does (trees before the layered packages tuned inside api.run; tuning twice is harmless)
    from moesim.util import alloc
except ImportError:
    from moesim import alloc
alloc.tune()
if os.environ.get("MOESIM_BENCH_WARM"):
    api.run(sys.argv[1], sys.argv[2:])
t, c = time.perf_counter(), time.process_time()
r = api.run(sys.argv[1], sys.argv[2:])
el, cpu = time.perf_counter() - t, time.process_time() - c
s = r.summary if isinstance(r.summary, dict) else r.doc
print(json.dumps({"seconds": el, "cpu_seconds": cpu, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "iteration_time_s": s["iteration_time_s"], "fidelity": s["fidelity"],
                  "gpus": s["nodes"] * s["gpus_per_node"]}))
"""


def _once(code_root: Path, name: str, extra: list[str], warm: bool = False) -> dict:
    _, scenario, overrides = CASES[name]
    env = {**os.environ, "PYTHONPATH": str(code_root), "MOESIM_BENCH_WARM": "1" if warm else ""}
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / scenario), *overrides, *extra],
                         capture_output=True, text=True, check=True, env=env, cwd=code_root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(name: str, r: dict, label: str = "") -> str:
    target = CASES[name][0]
    ok = "met" if r["seconds"] <= target and r["peak_rss_bytes"] <= MEMORY_TARGET.get(name, 4e9) else "NOT met"
    return (f"case {name}{label}: {r['gpus']} GPUs  {r['seconds']:.2f} s (target <= {target:.0f} s)  "
            f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB  iteration {r['iteration_time_s'] * 1e3:.3f} ms  "
            f"fidelity {r['fidelity']}  [{ok}]")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--against", help="git revision to compare with, in the same run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="fresh-process runs per case (median and range)")
    ap.add_argument("--warm", action="store_true", help="time a second run in the same process")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="PATH=VALUE",
                    help="extra override for every run (both trees), e.g. workload.scope=moe_layers")
    args = ap.parse_args(argv)
    if not args.against:
        label = " (warm)" if args.warm else ""
        for name in args.cases:
            runs = sorted((_once(ROOT, name, args.extra, args.warm) for _ in range(args.runs)),
                          key=lambda r: r["seconds"])
            r = runs[len(runs) // 2]
            print(_line(name, r, label if len(runs) == 1 else f"{label} (median of {len(runs)}: "
                        f"{runs[0]['seconds']:.2f}-{runs[-1]['seconds']:.2f} s)"), flush=True)
            b = _once(ROOT, name, [*args.extra, "sim.engine=bound"], args.warm)
            err = b["iteration_time_s"] / r["iteration_time_s"] - 1
            print(f"case {name}{label} on the closed-form floor: {b['seconds']:.2f} s, peak RSS "
                  f"{b['peak_rss_bytes'] / 2**30:.2f} GiB; engine / floor wall time {r['seconds'] / b['seconds']:.2f}; "
                  f"floor iteration {b['iteration_time_s'] * 1e3:.3f} ms ({err:+.2%} vs the engine)", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref), args.against],
                       check=True, capture_output=True)
        try:
            for name in args.cases:
                now, then = [], []
                for _ in range(args.repeat):  # alternate, so drift on a shared machine hits both alike
                    now.append(_once(ROOT, name, args.extra))
                    then.append(_once(ref, name, args.extra))
                med = lambda rs, k="seconds": statistics.median(r[k] for r in rs)  # noqa: E731
                print(_line(name, min(now, key=lambda r: r["seconds"]), " (this tree, best)"))
                print(_line(name, min(then, key=lambda r: r["seconds"]), f" ({args.against}, best)"))
                print(f"case {name}: median {med(now):.2f} s vs {med(then):.2f} s at {args.against}: "
                      f"ratio {med(now) / med(then):.3f}; CPU time (all threads) {med(now, 'cpu_seconds'):.2f} s vs "
                      f"{med(then, 'cpu_seconds'):.2f} s: ratio {med(now, 'cpu_seconds') / med(then, 'cpu_seconds'):.3f} "
                      f"({args.repeat} runs each)", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], capture_output=True)


if __name__ == "__main__":
    main(sys.argv[1:])
