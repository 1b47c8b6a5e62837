"""A fingerprint of the code and data that produce iteration times, for cache keys that cannot go stale.

Cached serving surfaces and sweep points are keyed by their resolved inputs and by this fingerprint: the
SHA-256 of every source file of the package (presentation, the CLI, calibration, the planner's search, the
executors and the request-level serving DES excepted: they never change an iteration time) and of every catalogue file
(GPU and model figures, profiles), in path order. Any edit to a cost function, a routing rule or a profile
gives a new key, so the cache is rebuilt; the package version played that part before and did not change
for 139 commits.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
# packages whose files never change a simulated figure (the planner's search reads surfaces and caches none:
# the scenarios it builds are part of every surface key; executors only decide where a point runs)
UNTIMED = ("present", "cli", "calibrate", "plan", "exec")
# the request-level serving DES and its records run on built surfaces and never inside one
UNTIMED_FILES = ("serve/sim.py", "serve/spans.py", "serve/guard.py", "serve/admission.py", "serve/state.py",
                 "serve/handover.py", "serve/metrics.py")
SUFFIXES = (".py", ".yaml", ".json", ".js")


def _files(root: Path) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if (p.is_file() and p.suffix in SUFFIXES and rel.parts[0] not in UNTIMED
                and rel.as_posix() not in UNTIMED_FILES and "__pycache__" not in rel.parts):
            out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


@functools.cache
def code_fingerprint(root: Path = PACKAGE) -> str:
    """Hex SHA-256 over (relative path, content) of the files under ``root`` that produce iteration times."""
    h = hashlib.sha256()
    for p in _files(root):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def cache_dir() -> Path:
    """Where moesim caches what this fingerprint keys (serving surfaces): $MOESIM_CACHE, else
    $XDG_CACHE_HOME/moesim, else ~/.cache/moesim."""
    env = os.environ.get("MOESIM_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moesim"
