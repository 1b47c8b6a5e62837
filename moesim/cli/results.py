"""``moesim sweep`` and ``moesim report``: studies over many points and the pages made from results, both
ranking rows by the objective the user names (``moesim.studies.objective``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from moesim.cli import parquet
from moesim.cli.types import EXECUTOR, RegistryChoice, dumps

OBJECTIVE = RegistryChoice("moesim.studies.objective:OBJECTIVES")
OBJECTIVE_HELP = ("What the recommended row is best at: throughput-per-gpu (tokens/s/GPU, the default), throughput "
                  "(total tokens/s), cost (USD per million tokens at --gpu-price), latency (shortest iteration).")
PRICE_HELP = "USD per GPU-hour, for --objective cost: one price (2.1) or one per GPU (h800=2.1,h100=2.5)."


@click.command(name="sweep")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Results folder: results.csv, results.jsonl and a per-point cache (points/).")
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes (default: one per CPU core).")
@click.option("--executor", "executor_kind", type=EXECUTOR, default="local", show_default=True,
              help="local: a pool of processes on this machine; serial: one after another here; "
                   "ray: tasks on a Ray cluster (pip install 'moesim[ray]').")
@click.option("--address", default=None, help="Ray cluster to join (e.g. ray://head:10001 or auto); "
              "default: a local Ray instance started for this run.")
@click.option("--objective", type=OBJECTIVE, default="throughput-per-gpu", show_default=True, help=OBJECTIVE_HELP)
@click.option("--gpu-price", "gpu_price", default=None, metavar="USD", help=PRICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@parquet.FORMAT
def sweep_cmd(sweep_file: Path, out_dir: Path, jobs: int, executor_kind: str, address: str | None,
              objective: str, gpu_price: str | None, as_json: bool, table_format: str) -> None:
    """Run a scenario over axes of parameters, in parallel, resuming where an earlier run stopped.

    \b
    SWEEP.yaml:
      base: ../scenarios/deepseek-v3-prefill-h800.yaml   # relative to the sweep file
      set: [model.num_hidden_layers=13]                   # optional overrides for every point
      grid: {cluster.nodes: [2, 4, 8], placement.kind: [contiguous, eplb]}   # cartesian product
      zip: {workload.tokens_per_gpu: [1024, 4096], sim.sampled_tokens: [16384, 65536]}  # stepped together
    Points are cached by a hash of their resolved scenario: run the same command again and only missing
    (or failed) points run. A point that fails is recorded with its error; the sweep goes on. The best
    point is the best by --objective (per GPU by default: the biggest cluster always has the most tokens/s).
      moesim sweep sweeps/v3-nodes-placement.yaml -o out/sweep --objective cost --gpu-price 2.1
    """
    from moesim.cli.study import sweep_with_progress
    from moesim.exec import make_executor
    from moesim.studies.objective import check
    from moesim.studies.sweep import load_sweep
    prices = check(objective, gpu_price)
    parquet.check(table_format, out_dir)
    summary = sweep_with_progress(load_sweep(sweep_file), out_dir, make_executor(executor_kind, jobs, address),
                                  objective, prices)
    parquet.write(table_format, out_dir)
    from moesim.present.tables import sweep_text
    from moesim.studies.sweep.run import METRIC_KEYS
    click.echo(dumps(summary, indent=1) if as_json else sweep_text(summary, out_dir, METRIC_KEYS), nl=as_json)
    if summary["points"] and summary["failed"] >= summary["points"]:  # failed counts the invalid points too
        click.echo(f"error: every point of the sweep failed (results and errors kept in {out_dir})", err=True)
        sys.exit(2)


@click.command(name="report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--title", default=None, help="Page title (default: 'moesim <kind> report').")
@click.option("--objective", type=OBJECTIVE, default="throughput-per-gpu", show_default=True,
              help=OBJECTIVE_HELP + " Plans keep their own answer: the cheapest deployment that meets the SLO.")
@click.option("--gpu-price", "gpu_price", default=None, metavar="USD", help=PRICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def report_cmd(results: tuple[Path, ...], out_dir: Path, title: str | None, objective: str, gpu_price: str | None,
               as_json: bool) -> None:
    """Write an interactive HTML page (one file, opens offline) and a Markdown page from results.

    \b
    RESULTS: folders written by `moesim run/compare/sweep/serve/plan -o`; several give one page comparing
    them (runs side by side, plans overlaid). Summary and recommendation first (the objective it ranks by
    stated on the page), then charts (hover for values, drag to zoom), then every row (sortable, units,
    the recommended row highlighted).
      moesim report out/run-a out/run-b -o reports/a-vs-b --title "A vs B"
      moesim report out/sweep -o reports/sweep --objective cost --gpu-price h800=2.1
    """
    from moesim.present.report import write_report
    from moesim.studies.objective import check
    paths = write_report(list(results), out_dir, title, objective, check(objective, gpu_price))
    if as_json:
        click.echo(dumps({"wrote": [str(p) for p in paths]}))
    for path in paths:
        click.echo(f"wrote {path}", err=True)
