"""``--format parquet``: every table a command writes in its ``-o`` folder (``*.csv``) also as Apache Parquet,
for notebooks and data tools. The CSVs stay (``moesim report`` reads them). pyarrow reads each CSV back with
its type inference (integers, floats, booleans, strings, nulls for empty cells) and writes the Parquet file
atomically; pyarrow is optional (``pip install 'moesim[parquet]'``) and checked before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from moesim.util.errors import MoesimError

HEADERLESS = {"gpu_layer_tokens.csv": "gpu"}  # matrices written without a header row: columns gpu0, gpu1, ...

FORMAT = click.option("--format", "table_format", type=click.Choice(["csv", "parquet"]), default="csv",
                      show_default=True, help="Tables in the -o folder: csv, or parquet (each table also as "
                      "NAME.parquet beside NAME.csv; needs pyarrow: pip install 'moesim[parquet]').")


def check(table_format: str, out_dir: Path | None) -> None:
    """Before the work starts: the ``-o`` folder takes files, and ``--format parquet`` has ``-o`` and
    pyarrow."""
    if table_format == "parquet":
        if out_dir is None:
            raise MoesimError("--format parquet writes the tables of the -o folder; give -o DIR too")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise MoesimError("--format parquet needs pyarrow, which is not installed; pip install "
                              "'moesim[parquet]' (or pyarrow), or leave out --format") from None
    if out_dir is not None:
        from moesim.util.files import check_writable
        check_writable(out_dir, "the results", "give -o a folder you can write")


def write(table_format: str, out_dir: Path | None) -> list[Path]:
    """Every ``*.csv`` in ``out_dir`` as ``*.parquet`` (when the format is parquet); the paths written."""
    if table_format != "parquet" or out_dir is None:
        return []
    written = []
    for path in sorted(out_dir.glob("*.csv")):
        target = path.with_suffix(".parquet")
        _write_atomic(target, _table(path))
        written.append(target)
    for path in written:
        click.echo(f"wrote {path}", err=True)
    return written


def _table(path: Path) -> Any:
    from pyarrow import csv
    prefix = HEADERLESS.get(path.name)
    if path.stat().st_size == 0:
        import pyarrow as pa
        return pa.table({})
    if prefix is None:
        return csv.read_csv(path)
    width = len(path.read_text(encoding="utf-8").split("\n", 1)[0].split(","))
    return csv.read_csv(path, read_options=csv.ReadOptions(column_names=[f"{prefix}{i}" for i in range(width)]))


def _write_atomic(target: Path, table: Any) -> None:
    import pyarrow.parquet as pq
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
