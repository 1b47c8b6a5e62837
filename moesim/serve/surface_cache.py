"""The surface cache's file format: a surface's body with the key of the grid (and code) it belongs to and a
digest over both, so an edited, truncated or swapped file is found on load and rebuilt, never trusted."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any


def digest(key: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(f"{key}\n{json.dumps(body, sort_keys=True)}".encode()).hexdigest()


def text(body: dict[str, Any], key: str) -> str:
    """The cache file for a surface's ``to_dict()`` under ``key``."""
    return json.dumps({"key": key, "digest": digest(key, body), "surface": body})


def read(path: Path, key: str) -> dict[str, Any] | None:
    """The surface body stored at ``path`` when the file is ``key``'s and its digest holds; else None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        body = doc["surface"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or doc.get("digest") != digest(key, body):
        return None
    return body


def surface_path(key: str) -> Path:
    """The cache file of the surface whose grid has ``key`` (``Grid.cache_key``)."""
    from moesim.util.fingerprint import cache_dir
    return cache_dir() / "surfaces" / f"{key}.json"


def is_cached(key: str) -> bool:
    """Whether the surface cache holds a file for ``key``; whether it is sound is checked when it is read."""
    return surface_path(key).is_file()


def partial_path(path: Path) -> Path:
    """Where the points of ``path``'s surface that finished before an interruption are kept."""
    return path.with_name(path.stem + ".partial.json")


def partial_text(points: dict[tuple[int, int], tuple[float, float, float]], key: str) -> str:
    """The partial file of a grid: its finished points {(tokens, context): (seconds, imbalance, group s)}."""
    return text({"points": [[t, c, *v] for (t, c), v in sorted(points.items())]}, key)


def read_partial(path: Path, key: str) -> dict[tuple[int, int], tuple[float, float, float]]:
    """The finished points kept at ``partial_path(path)`` for ``key``: only well-formed, finite, positive-time
    ones (a damaged file gives none, and the points run again)."""
    body = read(partial_path(path), key)
    out: dict[tuple[int, int], tuple[float, float, float]] = {}
    for row in (body or {}).get("points", []):
        try:
            t, c, s, imb, grp = row
            vals = (float(s), float(imb), float(grp))
        except (TypeError, ValueError):
            return {}
        if not (isinstance(t, int) and isinstance(c, int) and all(math.isfinite(v) for v in vals) and vals[0] > 0):
            return {}
        out[(t, c)] = vals
    return out
