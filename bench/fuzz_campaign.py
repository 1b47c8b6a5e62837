"""A long fuzzing campaign over the command line (the generator of tests/fuzz_cases.py): every case runs in
a forked child with a time limit and an address-space limit, two at a time; the figures (outcomes, the
distinct first lines of the errors, time per case) are printed for docs/hardening.md.

    python bench/fuzz_campaign.py --cases 2000 --seed 17
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import select
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_cases import case, run_case  # noqa: E402


def child(seed: int, wfd: int, mem_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    c = case(random.Random(seed))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        try:
            code, out = run_case(c, folder)
        except MemoryError:
            code, out = -2, "MemoryError outside the command"
    doc = {"seed": seed, "cmd": c[2][0], "code": code, "s": time.monotonic() - t0,
           "traceback": "Traceback" in out, "line": (out.strip().splitlines() or [""])[-1][:160]}
    os.write(wfd, json.dumps(doc).encode())
    os._exit(0)


def start(seed: int, mem: int) -> tuple[int, int, float, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child(seed, w, mem)
    os.close(w)
    return pid, r, time.monotonic(), seed


def finish(pid: int, r: int, seed: int, timeout: bool) -> dict:
    if timeout:
        os.kill(pid, signal.SIGKILL)
    data = b""
    while not timeout:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if timeout:
        return {"seed": seed, "code": "timeout", "s": None, "traceback": False, "line": "", "cmd": "?"}
    if not data:
        return {"seed": seed, "code": f"died ({status})", "s": None, "traceback": False, "line": "", "cmd": "?"}
    return json.loads(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--mem-gib", type=float, default=6.0)
    a = ap.parse_args()
    import moesim.cli.main  # noqa: F401, PLC0415 (imported once, before forking)

    seeds = [a.seed * 1_000_003 + i for i in range(a.cases)]
    running: list[tuple[int, int, float, int]] = []
    results = []
    t0 = time.monotonic()
    while seeds or running:
        while seeds and len(running) < a.jobs:
            running.append(start(seeds.pop(0), int(a.mem_gib * 2**30)))
        ready, _, _ = select.select([r for _, r, _, _ in running], [], [], 0.5)
        now = time.monotonic()
        for item in list(running):
            pid, r, began, seed = item
            if r in ready or now - began > a.timeout:
                results.append(finish(pid, r, seed, r not in ready))
                running.remove(item)
    wall = time.monotonic() - t0
    outcomes = collections.Counter(str(x["code"]) for x in results)
    by_cmd = collections.Counter((x["cmd"], str(x["code"])) for x in results)
    bad = [x for x in results if str(x["code"]) not in ("0", "2") or x["traceback"]]
    times = sorted(x["s"] for x in results if x["s"] is not None)
    print(f"{len(results)} cases in {wall:.0f} s ({a.jobs} at a time, {a.timeout:.0f} s and {a.mem_gib:g} GiB each)")
    print("outcomes:", dict(outcomes))
    print("by command:", {f"{k[0]}:{k[1]}": v for k, v in sorted(by_cmd.items())})
    print(f"time per case: median {times[len(times) // 2]:.2f} s, p99 {times[int(len(times) * 0.99)]:.2f} s, "
          f"max {times[-1]:.2f} s")
    lines = collections.Counter(x["line"].split(": ", 2)[-1][:70] for x in results if str(x["code"]) == "2")
    print(f"distinct error messages (first 70 characters): {len(lines)}")
    for line, n in lines.most_common(12):
        print(f"  {n:4d}  {line}")
    print(f"not a clear error or a run: {len(bad)}")
    for x in bad[:20]:
        print("  ", x)


if __name__ == "__main__":
    main()
