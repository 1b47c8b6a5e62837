"""``moesim serve`` (registered on the main group in moesim.cli.main) and the plan command's progress and
result handling: the terminal side of the serving simulation and the planner."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from moesim import api
from moesim.cli import parquet
from moesim.cli.types import dumps, stop_code
from moesim.util.progress import Phases

SET_HELP = "Override a scenario field by dotted path, e.g. --set serving.arrival.rate_per_s=8 (repeatable)."


@click.command(name="serve")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--rate", type=float, default=None, help="Requests per second (sets serving.arrival.rate_per_s).")
@click.option("--concurrency", type=int, default=None,
              help="Closed loop: this many requests in flight, the next sent when one finishes "
                   "(sets serving.load.concurrency; SGLang bench_serving --max-concurrency).")
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes for the surface (default: one per core).")
@click.option("--no-cache", is_flag=True, help="Rebuild the iteration surfaces instead of reading the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of the text.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write serve.json, requests.csv, timeline.csv and surfaces.json (for `moesim report`).")
@parquet.FORMAT
def serve_cmd(scenario: Path, overrides: tuple[str, ...], rate: float | None, concurrency: int | None, jobs: int,
              no_cache: bool, as_json: bool, out_dir: Path | None, table_format: str) -> None:
    """Simulate a request stream served by SCENARIO's deployment: TTFT, TPOT, throughput, goodput.

    \b
    The scenario's serving section (all optional, defaults shown in docs/serving.md):
      serving:
        arrival: {kind: poisson, rate_per_s: 8}      # gamma {rate_per_s, cv}, constant, or
                                                     # trace {path, format: azure|mooncake|csv}
        load: {concurrency: 64}                      # closed loop instead (arrival then unused)
        requests: 2000
        input_tokens: {kind: lognormal, mean: 4000, cv: 0.5}  # or {kind: random, value: 1024, range_ratio: 0.8}
        output_tokens: {kind: constant, value: 1000}
        prefix_hit: 0.0
        scheduler: {policy: prefill_first, max_batch: 128, token_budget: 8192, kv_memory_fraction: 0.9}
        deployment: {kind: aggregated, ep_gpus: 16}  # or {kind: disaggregated,
                                                     #     prefill: {gpus: 16}, decode: {gpus: 16}}
        mtp: {draft_tokens: 1, acceptance: 0.85}
        slo: {ttft_s: 2.0, tpot_s: 0.05, percentile: 90}
    Iteration times come from the iteration simulator run at grid points (tokens per GPU x context; in
    parallel, cached) and interpolated; the held-out error of that interpolation is printed.
    Examples:
      moesim serve scenarios/deepseek-v3-serve-h800.yaml
      moesim serve scenarios/deepseek-v3-serve-h800.yaml --rate 6 -o out/serve && moesim report out/serve -o out/r
    """
    from moesim.present.output import write_serve_outputs
    from moesim.present.serve_text import serve_text
    from moesim.util.files import to_json
    parquet.check(table_format, out_dir)
    bars = Phases("serve")
    points = lambda done, total: bars("surface points", done, total)  # noqa: E731
    try:
        result = api.serve(scenario, overrides, rate, jobs, not no_cache, concurrency, points)
    finally:
        bars.close()
    if out_dir:
        write_serve_outputs(out_dir, result)
        parquet.write(table_format, out_dir)
    click.echo(to_json(result.summary) if as_json else serve_text(result.summary), nl=False)


def finish_plan(result: dict[str, Any], out_dir: Path | None, as_json: bool,
                also: Callable[[], Any] = lambda: None) -> None:
    """Write plan.json/plan.csv (then ``also()``, e.g. the Parquet copies), print the table (or JSON), then
    exit 130 when interrupted and 2 when nothing meets the target (after writing: nothing is lost)."""
    from moesim.present.tables import plan_table
    from moesim.util.files import to_csv, to_json, write_atomic
    if out_dir:
        write_atomic(out_dir / "plan.json", to_json(result))
        write_atomic(out_dir / "plan.csv", to_csv(result["rows"]))
        also()
    click.echo(dumps(result, indent=1) if as_json else plan_table(result), nl=as_json)
    if result["interrupted"]:
        click.echo("interrupted: the rows above are the deployments that finished", err=True)
        sys.exit(stop_code())
    if result["best"] is None:
        click.echo("error: no deployment meets the target at the SLO (the notes above say why; outputs kept): "
                   "add nodes or GPU types, or relax serving.slo / target", err=True)
        sys.exit(2)
