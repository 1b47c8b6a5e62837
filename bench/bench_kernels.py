"""Per-kernel speed: DeepSeek-V3 routing per token (compiled and numpy twins, same ids), and the drain
scan per phase (compiled and numpy), each the best of ``--repeat`` runs in this process.

Usage: python bench/bench_kernels.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from moesim.engine import drain, drain_jit
from moesim.routing import topdown, topdown_jit
from moesim.routing.params import RoutingParams


def best(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def routing(repeat: int) -> None:
    rule = RoutingParams(256, 8, 8, 4, "sum_top2", "sigmoid", None)  # DeepSeek-V3
    pop = np.random.default_rng(0).power(0.5, 256)
    pop /= pop.sum()
    n = 65_536
    run = lambda: topdown.sample_topk(pop, n, rule, np.random.default_rng(1))  # noqa: E731
    run()
    fast = best(run, repeat)
    saved = topdown_jit.available
    topdown_jit.available = lambda: False
    try:
        slow = best(run, max(1, repeat // 3))
    finally:
        topdown_jit.available = saved
    print(f"routing, DeepSeek-V3 rule, {n:,} tokens: compiled {fast / n * 1e9:.0f} ns/token, "
          f"numpy {slow / n * 1e9:.0f} ns/token (ratio {slow / fast:.2f})", flush=True)


def drain_phase(repeat: int) -> None:
    rng = np.random.default_rng(2)
    links, flows = 20_000, 400_000
    paths = rng.integers(-1, links, size=(flows, 4))
    for batches in (80, 600):
        times = np.sort(rng.random(batches)) * 1e-3
        batch_of = rng.integers(0, batches, flows)
        cap, lat = rng.random(links) * 1e11 + 1e9, rng.random(links) * 1e-5
        nbytes = rng.random(flows) * 1e6
        args = (paths, nbytes, times[batch_of], cap, lat, np.zeros(links), batch_of, times)
        drain.drain_batches(*args)
        fast = best(lambda: drain.drain_batches(*args), repeat)
        saved = drain_jit.available
        drain_jit.available = lambda: False
        try:
            slow = best(lambda: drain.drain_batches(*args), max(1, repeat // 3))
        finally:
            drain_jit.available = saved
        print(f"drain, {flows:,} flows x 4 hops, {links:,} links, {batches} batches: compiled {fast * 1e3:.1f} ms, "
              f"numpy {slow * 1e3:.1f} ms (ratio {slow / fast:.2f})", flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if not topdown_jit.available():
        sys.exit("numba is not installed: pip install 'moesim[fast]'")
    routing(args.repeat)
    drain_phase(args.repeat)


if __name__ == "__main__":
    main(sys.argv[1:])
