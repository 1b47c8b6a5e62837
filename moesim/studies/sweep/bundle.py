"""Self-contained sweep tasks: the resolved scenario plus the contents of every file it reads (router
statistics, traces), so a worker on another machine needs no shared filesystem.

A task is (key, scenario, files) with files {absolute path: bytes}. A worker where a path is missing or
holds other bytes writes the bundled copy into a private folder and points the scenario at it.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from moesim.config.schema import Scenario


def referenced_files(s: Scenario) -> dict[str, bytes]:
    """{path: contents} of every existing file a field of ``s`` names."""
    out: dict[str, bytes] = {}
    for value in _strings(s.model_dump(mode="json")):
        p = Path(value)
        if p.is_absolute() and p.is_file():
            out[value] = p.read_bytes()
    return out


def materialize(s: Scenario, files: dict[str, bytes]) -> Scenario:
    """``s`` with each bundled path whose bytes are not already there replaced by a private copy."""
    moved: dict[str, str] = {}
    for path, data in files.items():
        p = Path(path)
        if p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data:
            continue
        digest = hashlib.sha256(data).hexdigest()[:16]
        copy = Path(tempfile.gettempdir()) / "moesim-bundle" / digest / p.name
        if not copy.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_suffix(copy.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(copy)
        moved[path] = str(copy)
    if not moved:
        return s
    raw = _replace(s.model_dump(mode="json"), moved)
    out = Scenario.model_validate(raw)
    # provenance labels are not part of the dump: carry them over
    return out.model_copy(update={"cluster": out.cluster.model_copy(
        update={"gpu_provenance": s.cluster.gpu_provenance})})


def _strings(x: Any):
    if isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str) and x.startswith("/"):
        yield x


def _replace(x: Any, moved: dict[str, str]) -> Any:
    if isinstance(x, dict):
        return {k: _replace(v, moved) for k, v in x.items()}
    if isinstance(x, list):
        return [_replace(v, moved) for v in x]
    return moved.get(x, x) if isinstance(x, str) else x
