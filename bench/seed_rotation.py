"""The property tests under rotating seeds: CI runs them derandomised (tests/conftest.py, profile ``default``),
so a run cannot fail by chance; this job runs them again with hypothesis exploring (profile ``explore``) and
a different ``--hypothesis-seed`` each time, so a property that holds only for the seeds CI happens to use
shows up here. Prints one line per run (seed, passed, failed, seconds) and the failures' test ids, and exits
1 when any run failed.

    python bench/seed_rotation.py --runs 20            # the test files that use hypothesis
    python bench/seed_rotation.py --runs 20 --all      # the whole README suite (about 2 minutes a run)
    python bench/seed_rotation.py --runs 5 --first 100 # seeds 100..104
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def property_files() -> list[str]:
    """Test files that draw examples from hypothesis (the ones a seed changes), in name order."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if re.search(r"^from hypothesis import|^import hypothesis", p.read_text(), re.M))


def run(seed: int, files: list[str]) -> tuple[int, int, float, list[str]]:
    """One pytest run with ``seed``: (passed, failed, seconds, failed test ids)."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--hypothesis-profile=explore",
           f"--hypothesis-seed={seed}", *files]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout
    count = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|error)", out.splitlines()[-1] if out else "")}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    return count.get("passed", 0), count.get("failed", 0) + count.get("error", 0), time.monotonic() - t0, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="how many seeds (default 20)")
    ap.add_argument("--first", type=int, default=1, help="the first seed; the rest follow (default 1)")
    ap.add_argument("--all", action="store_true", help="run the whole suite, not only the property test files")
    a = ap.parse_args()
    files = [] if a.all else property_files()
    print(f"{a.runs} runs, seeds {a.first}..{a.first + a.runs - 1}, "
          f"{'the whole suite' if a.all else f'{len(files)} files that use hypothesis'}", flush=True)
    bad = 0
    for seed in range(a.first, a.first + a.runs):
        passed, failed, secs, ids = run(seed, files)
        bad += failed > 0 or passed == 0
        print(f"seed {seed:>4}: {passed} passed, {failed} failed, {secs:.0f} s"
              + "".join(f"\n    {i}" for i in ids), flush=True)
    print(f"{a.runs - bad} of {a.runs} runs green")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
