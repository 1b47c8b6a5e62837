"""Files written the one way moesim writes them: atomically (a temporary file in the same folder, then a
rename), JSON with sorted keys, CSV with one header row. Every writer in moesim goes through here."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers never see a half-written file; the temporary file is removed
    when the write fails (a full disk, a signal), so nothing half-written is left beside it either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Before any work: ``folder`` exists (made if missing) and takes a new file; MoesimError naming it,
    ``what`` is written there, and ``fix`` otherwise."""
    from moesim.util.errors import MoesimError
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moesim-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise MoesimError(f"{folder}: cannot write {what} there ({exc.strerror or exc}); {fix}") from None


def to_json(summary: dict[str, Any]) -> str:
    """Stable JSON (sorted keys) so the same seed gives byte-identical output. Always valid JSON: a value
    that is not a finite number (a statistic of no samples) is written null, never NaN or Infinity."""
    try:
        return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError:  # rare: only then pay for the walk
        return json.dumps(finite_or_null(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"


def finite_or_null(v: Any) -> Any:
    """``v`` with every non-finite float replaced by None (JSON null), recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: finite_or_null(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [finite_or_null(x) for x in v]
    return v


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts with the first row's keys) as CSV text: one header line, then one line per row. Lists are
    JSON, floats print in full precision (``repr``), NaN is an empty cell, numpy scalars as Python's."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def columns_to_csv(cols: dict[str, Any]) -> str:
    """Columns of equal length (arrays or lists) as CSV text, the same text as ``to_csv`` of their rows,
    formatted a column at a time (a serving timeline has hundreds of thousands of rows)."""
    names = list(cols)
    n = len(next(iter(cols.values()))) if cols else 0
    if not n:
        return ",".join(names) + "\n"
    text = [_column(cols[k]) for k in names]
    if any(t is None for t in text) or any(c in k for k in names for c in _SPECIAL):
        return to_csv([{k: cols[k][i] for k in names} for i in range(n)])  # cells the csv module must quote
    return ",".join(names) + "\n" + "".join(",".join(r) + "\n" for r in zip(*text, strict=True))


_SPECIAL = (",", '"', "\n", "\r")


def _column(col: Any) -> list[str] | None:
    """A column's cells as ``to_csv`` writes them, or None where one would need quoting."""
    vals = col.tolist() if hasattr(col, "tolist") else list(col)
    out = []
    for v in vals:
        c = _cell(v)
        s = c if isinstance(c, str) else str(c)
        if any(ch in s for ch in _SPECIAL):
            return None
        out.append(s)
    return out


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return json.dumps(v)
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
        v = v.item()
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v
