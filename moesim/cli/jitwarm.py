"""The first ``moesim run`` after an install, without waiting for numba: the command uses the numpy twins of
the compiled kernels (the same results bit for bit, ``moesim.util.jit``) until numba's on-disk cache holds
them, and compiles them meanwhile in a background process (``python -m moesim.cli.jitwarm``).

Compiling every kernel took 13 s of a 15.5 s first ``moesim run`` of the DeepSeek-V3 decode scenario on the
2-core reference machine; the numpy twins run it in 4.7 s. The background process runs small scenarios that
reach the kernels (routing, traffic, both all-to-all algorithms, the drain network, placements), which
fills numba's cache, then writes a marker beside it named after the kernels' modules and the numba and
Python versions. Runs that find the marker use numba. Serving, planning and sweeps run for minutes on a cold
surface cache, where numba's 7x faster routing repays compiling: they compile in process, as the library
(``import moesim``) always does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# commands short enough that the numpy twins beat compiling first (serve, plan and sweeps run for minutes on
# a cold cache: they compile in process, as the library does, which fills the same cache)
SHORT = {"run"}
LOCK_STALE_S = 900.0  # a warming process older than this died: warm again
# the modules that compile kernels (tests/test_jitwarm.py checks that every importer of moesim.util.jit is here)
KERNELS = ("util/jit.py", "comm/flat.py", "comm/hierarchical.py", "comm/traffic.py", "engine/drain_jit.py",
           "hw/topology.py", "placement/affinity_jit.py", "placement/base.py", "routing/topdown_jit.py")


def _numba_version() -> str | None:
    """What identifies the installed numba (its _version.py, read without importing it), or None."""
    from importlib.util import find_spec
    spec = find_spec("numba")
    if spec is None or not spec.origin:
        return None
    version = Path(spec.origin).parent / "_version.py"
    return version.read_text(errors="replace") if version.is_file() else spec.origin


def marker(root: Path | None = None) -> Path | None:
    """The file that says numba's cache holds this code's kernels (None without numba)."""
    version = _numba_version()
    if version is None:
        return None
    from moesim.util.fingerprint import PACKAGE
    h = hashlib.sha256(f"{version}|{sys.version}|{platform.machine()}|{PACKAGE}".encode())
    for rel in KERNELS:  # numba keys its cache by these files: a new one of them needs a new warm-up
        h.update(rel.encode() + b"\0" + (PACKAGE / rel).read_bytes())
    # beside numba's cache (NUMBA_CACHE_DIR, else the package's __pycache__), not in MOESIM_CACHE: a new
    # surface cache does not make numba's cold
    where = root or Path(os.environ.get("NUMBA_CACHE_DIR") or PACKAGE / "util" / "__pycache__")
    return where / f"moesim-jit-ready-{h.hexdigest()[:16]}"


def prepare(argv: list[str], spawn=subprocess.Popen) -> bool:
    """Called by the ``moesim`` command before it runs: where numba is installed but its cache may be cold
    for this code, use the numpy twins in this process and start compiling in the background (unless
    another process is at it). Returns whether this process uses the numpy twins."""
    if os.environ.get("MOESIM_NO_JIT") or not argv or argv[0] not in SHORT or {"-h", "--help"} & set(argv):
        return False
    ready = marker()
    if ready is None or ready.exists():
        return False
    lock = ready.with_suffix(".lock")
    try:
        busy = lock.exists() and time.time() - lock.stat().st_mtime < LOCK_STALE_S  # another process compiles
        if not busy:
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.write_text(str(os.getpid()))
            spawn([sys.executable, "-m", "moesim.cli.jitwarm", str(ready)], env=dict(os.environ),
                  start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    except OSError:  # no cache to write (or no process to start): compile here, as the library does
        return False
    os.environ["MOESIM_NO_JIT"] = "1"  # read once, when moesim.util.jit is first imported
    if not busy:
        print("moesim: first run of this install: compiling its numba kernels in the background; this run "
              "uses their numpy versions (the same results, slower)", file=sys.stderr)
    return True


WARM = [  # small scenarios that reach every compiled kernel on the paths the shipped scenarios take
    {"model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
     "router": {"stats": {"kind": "power_law", "alpha": 1.01}}, "placement": {"kind": "eplb", "redundant_experts": 16},
     "comm": {"algorithm": "auto"}, "workload": {"mode": "decode", "tokens_per_gpu": 8, "context_tokens": 512}},
    {"model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
     "router": {"stats": {"kind": "power_law", "alpha": 1.01}}, "placement": {"kind": "eplb"},
     "comm": {"algorithm": "auto"}, "workload": {"mode": "prefill", "tokens_per_gpu": 256}},
    {"model": "mixtral-8x7b", "cluster": {"gpu": "a100-80gb", "nodes": 1, "gpus_per_node": 8},
     "placement": {"kind": "affinity"}, "comm": {"algorithm": "flat"}, "workload": {"tokens_per_gpu": 64}},
]


def warm(ready: Path, scenarios: list[dict] | None = None) -> None:
    """Run ``scenarios`` (default ``WARM``) with numba, which fills its cache, then write ``ready``."""
    from moesim.iteration.run import run_scenario
    from moesim.iteration.scenario import scenario_from_dict
    try:
        for raw in WARM if scenarios is None else scenarios:
            with contextlib.suppress(Exception):  # a path a scenario cannot take compiles on first use
                run_scenario(scenario_from_dict({"name": "jit-warm", "seed": 1, **raw}))
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.write_text("numba's cache holds moesim's kernels\n")
    finally:
        with contextlib.suppress(OSError):
            ready.with_suffix(".lock").unlink()


if __name__ == "__main__":  # pragma: no cover (a background process of the moesim command)
    with contextlib.suppress(AttributeError, OSError):  # the command that started it keeps the CPU first
        os.nice(19)
    warm(Path(sys.argv[1]))
