"""Helpers of the study commands (compare, sweep): printing, writing and exit codes at the edges, so the
click functions in cli.py stay thin."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from moesim.cli.types import dumps, stop_code
from moesim.util.progress import Progress


def finish_compare(rows: list[dict], scenario: Path, out_dir: Path | None, as_json: bool, stopped: bool,
                   also: Callable[[], Any] = lambda: None) -> None:
    """Print and write the rows (then ``also()``, e.g. the Parquet copies); exit 130 when interrupted, 2 when
    no variant ran (after writing)."""
    from moesim.present.compare import plot, table
    from moesim.util.files import to_csv, to_json, write_atomic
    click.echo(dumps(rows, indent=1) if as_json else table(rows))
    if out_dir and rows:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out_dir / "compare.json", to_json(rows))
        write_atomic(out_dir / "compare.csv", to_csv(rows))
        plot(rows, out_dir / "compare.png", f"{scenario.stem}: placements on the same router draws")
        click.echo(f"wrote {out_dir}/compare.json, compare.csv, compare.png", err=True)
        also()
    if stopped:
        click.echo(f"interrupted: the {len(rows)} rows above are the variants that finished", err=True)
        sys.exit(stop_code())
    if all(r.get("error") for r in rows):
        sys.exit(2)


def sweep_with_progress(spec: Any, out_dir: Path, executor: Any, objective: str = "throughput-per-gpu",
                        prices: Any = None) -> dict[str, Any]:
    """Run the sweep with a progress line (cached points counted, not timed); Ctrl-C exits 130 after
    saying where the finished points are (they are on disk already)."""
    from moesim.studies.sweep import run_sweep
    bar: list[Progress] = []

    def progress(done: int, todo: int, cached: int) -> None:
        if not bar:
            bar.append(Progress("sweep", todo + cached, cached))
        elif done:
            bar[0].step()

    try:
        summary = run_sweep(spec, out_dir, executor, progress, objective, prices)
    except KeyboardInterrupt:
        if bar:
            bar[0].close()
        click.echo(f"interrupted: every finished point is in {out_dir}; run the same command to resume", err=True)
        sys.exit(stop_code())
    if bar:
        bar[0].close()
    return summary


def validate_measured(what: str, rows_csv: Path | None, only: str | None, jobs: int, out_dir: Path | None,
                      refit: bool, rebase: bool, as_json: bool) -> None:
    """``moesim validate e2e`` (or its ``--refit``/``--rebase``), ``moesim validate training`` and
    ``moesim validate offload`` (the same)."""
    if what == "training" and (refit or rebase):
        return refit_training(rebase, as_json)
    if what == "training":
        return validate_training(only, as_json, out_dir)
    if what == "offload" and (refit or rebase):
        return refit_offload(rebase, as_json)
    if what == "offload":
        return validate_offload(only, as_json, out_dir)
    if refit or rebase:
        return refit_e2e(jobs, rebase, as_json)
    return validate_e2e(rows_csv, only, jobs, out_dir, as_json)


def refit_training(rebase: bool, as_json: bool) -> None:
    """``moesim validate training --refit`` (and ``--rebase``): the base run (again, with --rebase), the fit,
    the catalogue's frameworks file written, the term and its errors printed."""
    from moesim.config.catalog import FRAMEWORKS
    from moesim.studies.e2e.training import BASE, fit_table, predict, select
    from moesim.studies.e2e.training_fit import base_document, refit

    rows = select()[0] if rebase else None
    _refit("training base rows", rows, lambda r, progress: base_document(r, predict, progress=progress), BASE, refit,
           FRAMEWORKS, fit_table, as_json)


def refit_offload(rebase: bool, as_json: bool) -> None:
    """``moesim validate offload --refit`` (and ``--rebase``): the base run (again, with --rebase), the fit of
    the local engine's terms, catalog/offload_engines.json written, the terms and their errors printed."""
    from moesim.config.catalog import OFFLOAD_ENGINES
    from moesim.studies.e2e.ktransformers import select
    from moesim.studies.e2e.offload import BASE, fit_table, simulate
    from moesim.studies.e2e.offload_fit import base_document, refit

    rows = select()[0] if rebase else None
    _refit("offload base rows", rows, lambda r, progress: base_document(r, simulate, progress=progress), BASE,
           refit, OFFLOAD_ENGINES, fit_table, as_json)


def validate_offload(only: str | None, as_json: bool, out_dir: Path | None = None) -> None:
    """``moesim validate offload``: KTransformers' published rows (see _validate_rows)."""
    from moesim.studies.e2e import ktransformers, offload
    _validate_rows("offload", "tokens/s", ktransformers.select, offload.compare, offload.table, only, as_json, out_dir)


def _refit(label: str, rows: list[Any] | None, make_base: Callable[..., dict[str, Any]], base_path: Path,
           refit: Callable[[dict[str, Any]], dict[str, Any]], out: Path, text: Callable[[dict[str, Any]], str],
           as_json: bool) -> None:
    """A fit from its stored base run: with ``rows``, the base run of them again first (``make_base(rows,
    progress)``, with a progress line) and written to ``base_path``; then the fitted document written to
    ``out`` and printed as ``text`` (or JSON)."""
    from moesim.util.files import to_json, write_atomic
    if rows is not None:
        bar = Progress(label, len(rows))
        base = make_base(rows, lambda k, n, g: bar.update(k, note=g))
        bar.close()
        write_atomic(base_path, to_json(base))
        click.echo(f"wrote {base_path}", err=True)
    doc = refit(json.loads(base_path.read_text(encoding="utf-8")))
    write_atomic(out, to_json(doc))
    click.echo(f"wrote {out}", err=True)
    click.echo(dumps(doc, indent=1) if as_json else text(doc), nl=as_json)


def validate_training(only: str | None, as_json: bool, out_dir: Path | None = None) -> None:
    """``moesim validate training``: the Megatron-Bridge rows (see _validate_rows)."""
    from moesim.studies.e2e import training
    _validate_rows("training", "tokens/s/GPU", training.select, training.compare, training.table, only, as_json,
                   out_dir)


def _validate_rows(name: str, unit: str, select: Callable[..., Any], compare: Callable[..., dict[str, Any]],
                   table: Callable[[dict[str, Any]], str], only: str | None, as_json: bool,
                   out_dir: Path | None) -> None:
    """The rows ``only`` names simulated with a progress line, the table (or JSON), and with ``out_dir``
    the report; an ``only`` that names no row is a usage error."""
    rows, skipped = select(only)
    if not rows and not skipped:
        raise click.UsageError(f"--only {only!r} matches no row")
    bar = Progress(f"{name} rows", len(rows))
    doc = compare(rows, skipped, progress=lambda k, n, g: bar.update(k, note=g))
    bar.close()
    _measured_out(doc, table(doc), as_json, out_dir, name, unit)


def _measured_out(doc: dict[str, Any], text: str, as_json: bool, out_dir: Path | None, name: str, unit: str) -> None:
    """Print the table (or JSON); with ``out_dir``, write the report there too."""
    click.echo(dumps(doc, indent=1) if as_json else text, nl=as_json)
    if out_dir:
        from moesim.present.measured_report import write_measured_report
        for path in write_measured_report(doc, text, out_dir, name, unit):
            click.echo(f"wrote {path}", err=True)


def validate_e2e(rows_csv: Path | None, only: str | None, jobs: int, out_dir: Path | None, as_json: bool) -> None:
    """``moesim validate e2e``: run the rows with a progress line, print the table (or JSON), write the report."""
    from moesim.exec import make_executor
    from moesim.present.e2e_text import table, write_report
    from moesim.studies.e2e.run import INFERENCEX, compare, rows_of, select
    rows = select(rows_of(rows_csv or INFERENCEX), only)
    if not rows:
        raise click.UsageError(f"--only {only!r} matches no row")
    bar = Progress("e2e rows", len(rows))
    doc = compare(rows, make_executor("local", jobs, None), progress=lambda k, n, g: bar.update(k, note=g))
    bar.close()
    click.echo(dumps(doc, indent=1) if as_json else table(doc), nl=as_json)
    if out_dir:
        for path in write_report(doc, out_dir):
            click.echo(f"wrote {path}", err=True)



def refit_e2e(jobs: int, rebase: bool, as_json: bool) -> None:
    """``moesim validate e2e --refit`` (and ``--rebase``): the base run (again, with --rebase), the fit,
    the shipped terms file written, the terms and their errors printed."""
    from moesim.exec import make_executor
    from moesim.present.e2e_text import fit_table
    from moesim.serve.terms import TERMS_FILE
    from moesim.studies.e2e.fit import refit
    from moesim.studies.e2e.run import BASE, INFERENCEX, base_document, rows_of

    def make_base(rows: list[Any], progress: Callable[[int, int, str], None]) -> dict[str, Any]:
        return base_document(rows, make_executor("local", jobs, None), progress=progress)

    rows = rows_of(INFERENCEX, frozenset()) if rebase else None
    _refit("e2e base rows", rows, make_base, BASE, refit, TERMS_FILE, fit_table, as_json)
