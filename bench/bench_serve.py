"""Speed of `moesim serve` and of stopping `moesim plan` with Ctrl-C. Prints figures; asserts nothing.

serve: a 10-minute serving run of the shipped DeepSeek-V3 scenario (8 requests/s for 600 s = 4,800
requests) on surfaces in the cache: a first run builds them if missing (timed apart), the second is timed. Prints the surface build
time, the serving DES time and simulated seconds per wall second.
interrupt: starts `moesim plan` on a small plan in a subprocess, sends SIGINT once the first deployment has
finished, and prints how long the process took to exit and whether plan.json kept the finished rows.

Usage: python bench/bench_serve.py [serve] [interrupt]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "deepseek-v3-serve-h800.yaml"
PLAN = """model: {base: mixtral-8x7b, num_hidden_layers: 2}
gpus: {h100: {price_per_hour: 2.5}, h200: {price_per_hour: 4.0}, a100-80gb: {price_per_hour: 1.5}}
gpus_per_node: 4
serving: {input_tokens: {kind: constant, value: 512}, output_tokens: {kind: constant, value: 64},
          slo: {ttft_s: 0.5, tpot_s: 0.05}}
search: {nodes: [1, 2, 3], max_batch: [2, 16, 64]}
scenario: {router: {stats: {kind: dirichlet, concentration: 8}}, comm: {algorithm: flat}}
"""


def serve() -> None:
    from moesim.exec import LocalProcessExecutor
    from moesim.iteration.scenario import load_scenario
    from moesim.serve import serve as run_serve
    from moesim.util.files import write_atomic

    s = load_scenario(SCENARIO, ["serving.requests=4800", "serving.duration_s=600"])
    ex = LocalProcessExecutor(os.cpu_count() or 1)
    t0 = time.perf_counter()
    run_serve(s, ex, True, None, write_atomic)  # builds the surfaces unless cached
    t1 = time.perf_counter()
    res = run_serve(s, ex, True, None, write_atomic)
    t2 = time.perf_counter()
    sim_s = res.summary["duration_s"]
    print(f"serve: surfaces {t1 - t0:.1f} s (0 when cached); {res.summary['requests']} requests, {sim_s:.0f} s "
          f"simulated in {t2 - t1:.2f} s wall ({sim_s / (t2 - t1):.0f} simulated s per wall s)")


def interrupt() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "p.yaml"
        plan.write_text(PLAN)
        env = {**os.environ, "MOESIM_CACHE": str(Path(tmp) / "cache")}
        proc = subprocess.Popen([sys.executable, "-m", "moesim", "plan", str(plan), "-o", str(Path(tmp) / "out")],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                start_new_session=True)
        for line in proc.stderr:
            if line.startswith("[plan] deployments 1/"):
                break
        t0 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        proc.wait()
        dt = time.perf_counter() - t0
        out = Path(tmp) / "out" / "plan.json"
        kept = json.loads(out.read_text()) if out.is_file() else None
        rows = sum(1 for r in kept["rows"] if r["feasible"]) if kept else 0
        print(f"interrupt: exited {dt:.2f} s after SIGINT with code {proc.returncode}; plan.json "
              f"{'kept ' + str(rows) + ' finished rows' if kept else 'missing'}")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["serve", "interrupt"]:
        {"serve": serve, "interrupt": interrupt}[name]()
