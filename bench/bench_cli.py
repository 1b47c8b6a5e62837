"""What a user waits for at the command line: each command as a whole process (interpreter start, imports,
the work, the output), beside the same work timed inside one process (issue 32's CLI rows).

Cases: ``help`` (``moesim --help``), ``run-a`` (``moesim run`` on bench case (a), DeepSeek-V3 decode EP144,
``--json``), ``list`` (``moesim list placements``), and two from an empty surface cache (a new
``MOESIM_CACHE`` per run): ``serve-cold`` (``moesim serve`` of the shipped DeepSeek-V3 H800 scenario) and
``plan-aic`` (``moesim plan plans/aic-compare-v3-h100.yaml -j 2``, minutes: not in the default set); and
``run-first`` (``run-a`` as the first run after an install: numba's cache of the package deleted and no
warm-up marker; it waits for the background compile to end). Each runs ``--runs`` times (default 5; 1 for
the cold and first-run cases) in fresh processes; prints the median and range of the wall
time, the median peak memory (max RSS) and the target. ``run-a`` also prints the in-process time of
``api.run`` (warm: the second call in one process) and the ratio of the two: what start-up costs. Absolute
times on a shared machine are noisy; compare figures of one invocation.

Usage: python bench/bench_cli.py [help run-a list serve-cold plan-aic run-first ...] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "scenarios/deepseek-v3-decode-h800.yaml"
CASES = {
    # name: (target wall seconds from issue 32, command arguments)
    "help": (0.2, ["--help"]),
    "run-a": (0.5, ["run", SCENARIO, "--json"]),
    "list": (None, ["list", "placements"]),
    "serve-cold": (20.0, ["serve", "scenarios/deepseek-v3-serve-h800.yaml"]),
    "plan-aic": (30.0, ["plan", "plans/aic-compare-v3-h100.yaml", "-j", "2"]),
    "run-first": (3.0, ["run", "scenarios/deepseek-v3-decode-h800.yaml", "--json"]),
}
FIRST = {"run-first"}  # as after an install: numba's cache of the package deleted, no warm-up marker
COLD = {"serve-cold", "plan-aic"}  # each run from an empty surface cache
DEFAULT = ["help", "run-a", "list", "serve-cold"]
CLI = [sys.executable, "-c", "import sys; from moesim.cli import entry; sys.argv[0] = 'moesim'; entry()"]


def wall(args: list[str], cold: bool = False, first: bool = False) -> tuple[float, int]:
    """Seconds and peak RSS (KiB, this process alone: os.wait4) of one fresh ``moesim ARGS`` process;
    ``cold``: with an empty surface cache of its own (and outputs in a temporary folder); ``first``: also
    with numba's cache of the package deleted (waits for the background compile before it returns)."""
    from moesim.cli.jitwarm import marker
    ready = marker()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MOESIM_CACHE": tmp} if cold else None
        if first:
            for f in [*(ROOT / "moesim").rglob("__pycache__/*.nb[ic]"), ready]:
                f.unlink(missing_ok=True)
        args = [*args, "-o", tmp] if cold and args[0] == "plan" else args
        t0 = time.perf_counter()
        child = subprocess.Popen(CLI + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        dt = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise SystemExit(f"moesim {' '.join(args)} failed: {err.read()[-400:].decode(errors='replace')}")
        while first and not ready.exists() and time.perf_counter() - t0 < 120:
            time.sleep(0.5)  # the background compile fills numba's cache again
    return dt, usage.ru_maxrss


def in_process() -> float:
    """Seconds of a warm ``api.run`` of bench case (a) (its second call in this process)."""
    from moesim import api
    api.run(ROOT / SCENARIO)
    t0 = time.perf_counter()
    api.run(ROOT / SCENARIO)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="*", metavar="CASE", help=f"any of {', '.join(CASES)} (default: all)")
    ap.add_argument("--runs", type=int, default=None, help="runs per case (default 5; 1 for the cold cases)")
    a = ap.parse_args()
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case {', '.join(unknown)}: choose from {', '.join(CASES)}")
    for name in a.cases or DEFAULT:
        target, args = CASES[name]
        n = a.runs or (1 if name in COLD | FIRST else 5)
        runs = [wall(args, name in COLD, name in FIRST) for _ in range(n)]
        times = sorted(t for t, _ in runs)
        med = statistics.median(times)
        rss = statistics.median(m for _, m in runs) / 1024
        goal = f"target <= {target} s" if target else "no target"
        print(f"{name:6s} moesim {' '.join(args)}: {med:.3f} s median of {n} "
              f"({times[0]:.3f}-{times[-1]:.3f}), peak RSS {rss:.0f} MiB (median); {goal}")
        if name == "run-a":
            inner = in_process()
            print(f"{'':6s} in one process (warm api.run): {inner:.3f} s; the whole command is "
                  f"{med / inner:.1f}x that")


if __name__ == "__main__":
    main()
