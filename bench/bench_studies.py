"""Wall time of the study commands on this machine: `moesim compare` of 20 placement variants at EP32, and
a decode sweep of N points (default 40; the issue's target is 1,000 points in 10 minutes on 2 cores, so
the per-point time and the projection to 1,000 points are printed: a projection, labelled so).

Usage: python bench/bench_studies.py [compare] [sweep] [--points N] [--jobs J]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = "contiguous,round_robin,random,eplb,affinity"  # optimal (a MIP, up to 20 s per layer) left out


def bench_compare() -> None:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moesim", "compare", str(ROOT / "scenarios/deepseek-v3-prefill-h800.yaml"),
                    "--placements", KINDS, "--redundant", "0,32,64,96", "--json"], check=True,
                   capture_output=True, cwd=ROOT)
    print(f"compare: 20 variants (5 placements x 4 redundancy levels) at EP32: {time.perf_counter() - t:.1f} s "
          f"(target <= 60 s)", flush=True)


def bench_sweep(points: int, jobs: int) -> None:
    tokens = [16, 32, 48, 64, 96, 128, 160, 192, 256, 320]
    nodes = [2, 4, 8, 16]
    # seeds outermost: every (nodes, tokens) cell of the grid before any cell repeats with a new seed
    combos = [(n, t, seed) for seed, n, t in itertools.islice(itertools.product(range(1000), nodes, tokens), points)]
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        zipped = {"workload.tokens_per_gpu": [c[1] for c in combos], "cluster.nodes": [c[0] for c in combos],
                  "seed": [c[2] for c in combos]}
        sweep.write_text(f"base: {ROOT / 'scenarios/deepseek-v3-decode-h800.yaml'}\n"
                         f"set: [placement.redundant_experts=0]\nzip: {zipped}\n")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "moesim", "sweep", str(sweep), "-o", str(Path(tmp) / "out"), "-j",
                        str(jobs), "--json"], check=True, capture_output=True, cwd=ROOT)
        el = time.perf_counter() - t
    scale = "measured" if points == 1000 else f"projected from {points} points"
    print(f"sweep: {points} DeepSeek-V3 decode points (EP16-EP128, 16-320 tokens/GPU) with {jobs} workers: "
          f"{el:.1f} s, {el / points:.2f} s per point; 1,000 points: {el / points * 1000 / 60:.1f} min "
          f"({scale}; target <= 10 min)", flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=["compare", "sweep"])
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if "compare" in args.cases:
        bench_compare()
    if "sweep" in args.cases:
        bench_sweep(args.points, args.jobs)


if __name__ == "__main__":
    main(sys.argv[1:])
