"""Reading aiconfigurator's perf-database files (parquet through pandas, or CSV) as plain records."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def records(path: Path) -> list[dict[str, Any]]:
    """A perf table's records: parquet (the shipped database; needs pandas + pyarrow) or CSV with the same
    columns (older aiconfigurator releases wrote text tables; tests use it)."""
    if path.suffix == ".parquet":
        import pandas as pd  # importer only
        return pd.read_parquet(path).to_dict("records")
    import csv
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
