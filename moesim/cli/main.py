"""The ``moesim`` command line: a thin layer that turns arguments into moesim.api calls."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from moesim import __version__, api
from moesim.cli import parquet
from moesim.cli.outputs import SILICON_INTRO, offload_out, pipeline_out
from moesim.cli.types import EXECUTOR, PLACEMENT_LIST, Group, RegistryChoice, dumps, handle_signals, stop_code
from moesim.util import alloc
from moesim.util.errors import MoesimError

OVERSUBSCRIBE = click.option(
    "--allow-oversubscribe", "oversubscribe", is_flag=True,
    help="Run a deployment that does not fit in GPU memory anyway, as a what-if (sim.allow_oversubscribe); "
         "by default it is refused, naming the biggest consumer and the fix.")
SET_HELP = "Override a scenario field by dotted path, e.g. --set router.top_k=4 --set cluster.nodes=8 (repeatable)."


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moesim")
def main() -> None:
    """Simulate Mixture-of-Experts models on GPU clusters.

    \b
    Start from a shipped scenario:
      moesim run scenarios/deepseek-v3-prefill-h800.yaml
      moesim run scenarios/deepseek-v3-prefill-h800.yaml --set cluster.nodes=8 --json
      moesim list models
    """
    alloc.tune()  # the command owns this process: large temporaries reused, not faulted in per phase
    handle_signals()  # SIGTERM stops a command as Ctrl-C does (exit 143)


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the table.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write result.json, layers.csv and gpus.csv into this folder.")
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a Chrome trace of the iteration (open it in https://ui.perfetto.dev).")
@parquet.FORMAT
@OVERSUBSCRIBE
def run(scenario: Path, overrides: tuple[str, ...], as_json: bool, out_dir: Path | None,
        trace_file: Path | None, table_format: str, oversubscribe: bool) -> None:
    """Simulate one iteration of SCENARIO (a YAML file) and say where its time goes.

    \b
    Prints throughput (whole model by default when the model gives its attention shape; per GPU and per
    node too), iteration time, the time per named stage on the critical path (attention, router,
    dispatch, routed_experts, combine, ... and waiting; they add up to the iteration), then per layer.
    Examples:
      moesim run scenarios/deepseek-v3-decode-h800.yaml --set workload.micro_batches=2
      moesim run scenarios/qwen3-235b-h100.yaml --json
      moesim run scenarios/mixtral-8x7b-a100.yaml -o out/ --trace out/trace.json
    """
    parquet.check(table_format, out_dir)
    result = api.run(scenario, [*overrides, *(["sim.allow_oversubscribe=true"] if oversubscribe else [])])
    if getattr(result, "offload", False):
        offload_out(result, as_json, out_dir, trace_file)
    elif getattr(result, "pipeline", False):
        pipeline_out(result, as_json, out_dir, trace_file)
    else:
        _run_out(result, as_json, out_dir, trace_file)
    parquet.write(table_format, out_dir)


def _run_out(result: api.Result, as_json: bool, out_dir: Path | None, trace_file: Path | None) -> None:
    from moesim.present import output, trace
    click.echo(output.to_json(result.doc) if as_json else output.table(result.summary), nl=False)
    if out_dir:
        loads = [st.gpu_tokens for st in result.built.stats]
        for path in output.write_outputs(out_dir, result.doc, loads):
            click.echo(f"wrote {path}", err=True)
    if trace_file:
        output.write_atomic(trace_file, trace.chrome_trace(result.records, result.programs,
                                                           result.summary.meta["gpus_per_node"],
                                                           topology=result.built.topology))
        click.echo(f"wrote {trace_file}", err=True)


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@OVERSUBSCRIBE
def check(scenario: Path, overrides: tuple[str, ...], as_json: bool, oversubscribe: bool) -> None:
    """Validate SCENARIO without simulating; print the resolved configuration as YAML, then the run's size
    estimate (peak memory, time) as a YAML comment (--json: one object with both). A deployment that does
    not fit in GPU memory, or a context beyond the model's maximum, is refused (exit 2) naming the fix."""
    doc, note = api.check(scenario, [*overrides, *(["sim.allow_oversubscribe=true"] if oversubscribe else [])])
    if as_json:
        return click.echo(dumps({**doc, "estimate": note}, indent=1))
    import yaml
    click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
    click.echo(f"# {note}")


@main.command(name="list")
@click.argument("what", type=click.Choice(["models", "gpus", "hosts", *api.REGISTRIES]))
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue entries as JSON.")
def list_(what: str, as_json: bool) -> None:
    """List the catalogue: real MoE models, GPUs, or host machines (DRAM, NVMe, host link, CPU: for
    offload scenarios), each figure with its label (measured/datasheet/published/estimated) and source;
    or an extension point's registry: placements, algorithms (all-to-all), routing-rules, layer-kinds
    (attention), schedulers (serving), engines (serving profiles: sglang, vllm, trtllm), cost-models,
    executors, launchers (engine launch files: moesim export-launch)."""
    from moesim.cli.formats import list_doc, list_text
    click.echo(dumps(list_doc(what), indent=1) if as_json else list_text(what), nl=as_json)


@main.command()
@click.argument("what", type=click.Choice(["kernels", "e2e", "training", "offload"]), default="kernels",
                required=False)
@click.option("--rows", "rows_csv", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="e2e: an InferenceX export (default: the shipped rows, moesim/studies/e2e/data).")
@click.option("--only", help="e2e, training, offload: rows whose group contains this text (e.g. trtllm/agg, "
                             "b200/training, 1-socket/decode), or row numbers 1,5,9.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=2, show_default=True,
              help="e2e: processes building iteration surfaces.")
@click.option("--profile", default="cpu-ref", show_default=True,
              help="A measured (calibrate/) or silicon (moesim.calibrate.import_aic) profile: a name from "
                   "`moesim list gpus` or a path to its JSON file.")
@click.option("--stored/--live", default=True, show_default=True,
              help="--stored re-predicts the measurements kept beside the profile (no torch, no timing); "
                   "--live measures the held-out layers again on this machine first (needs torch).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write a report (README.md, the rows as JSON, measured-vs-predicted PNGs) to this folder "
                   "(kernels, e2e, training, offload).")
@click.option("--refit", is_flag=True,
              help="e2e: fit the engine terms again from the shipped base run and measured rows (seconds, no "
                   "simulation, deterministic), write them to moesim/serve/data/engine_terms.json and print them "
                   "with their leave-one-group-out errors; training: the same for Megatron's term "
                   "(moesim/config/catalog/frameworks.json); offload: KTransformers' CPU-kernel and hand-off terms "
                   "(moesim/config/catalog/offload_engines.json).")
@click.option("--rebase", is_flag=True,
              help="e2e, training, offload: run every row with no fitted terms first (the base run the fit starts "
                   "from; e2e minutes, training and offload about a minute), write it beside the rows, then --refit.")
@click.option("--json", "as_json", is_flag=True, help="Print rows, errors and the DeepEP table as JSON.")
def validate(what: str, rows_csv: Path | None, only: str | None, jobs: int, profile: str, stored: bool,
             out_dir: Path | None, refit: bool, rebase: bool, as_json: bool) -> None:
    """Compare the simulator's predictions with measured MoE layers it was not fitted on (``kernels``, the
    default), or with measured deployments end to end (``e2e``: every row of an InferenceX export served,
    median TTFT, median TPOT and throughput per GPU, errors per group; fit and test rows apart; ``training``:
    Megatron-Bridge's published MoE pre-training throughput per GPU, fit and test rows apart; ``offload``:
    KTransformers' published DeepSeek-V3 prefill and decode tokens/s with every routed expert on the CPU).

    \b
    Per piece and end to end: MAPE, P90 and max absolute percentage error, signed mean error (bias).
    A silicon profile reports its held-out table rows per group (whole shapes, off-grid token counts,
    power-law loads). Also simulates DeepEP's published normal and low-latency benchmarks and DeepSeek's
    published serving figures with the catalogue H800 and prints the errors.
    Examples:  moesim validate --profile cpu-ref -o reports/validation-cpu-ref
               moesim validate --profile h100-sglang -o reports/validation-h100-sglang
               moesim validate e2e -o reports/e2e            (all 50 InferenceX rows, minutes)
               moesim validate e2e --only trtllm/agg --json
               moesim validate e2e --refit                   (the engine terms fitted again, seconds)
               moesim validate training --only b200          (Megatron-Bridge pre-training rows)
               moesim validate training --refit              (Megatron's term fitted again, a second)
               moesim validate offload --only decode         (KTransformers' local decode rows)
    """
    if what != "kernels":
        from moesim.cli.study import validate_measured
        return validate_measured(what, rows_csv, only, jobs, out_dir, refit, rebase, as_json)
    from moesim.present.report_validation import tables, write_report
    rep = api.validate(profile, stored)
    rows, errors, deepep, serving = rep["rows"], rep["errors"], rep["deepep"], rep["deepseek_serving"]
    if as_json:
        click.echo(dumps({k: rep[k] for k in ("profile", "rows", "errors", "deepep", "deepep_low_latency",
                                                   "deepseek_serving")},
                              indent=1, sort_keys=True))
    else:
        click.echo(tables(rows, errors, deepep, serving, rep["deepep_low_latency"], cases=not rep.get("silicon")))
    if out_dir:
        data = rep["data"]
        write_report(out_dir, rep["profile"], rows, errors, deepep, data["command"],
                     data.get("drift", {}).get("median_ratio_now_over_calibration"), serving, rep["deepep_low_latency"],
                     SILICON_INTRO if rep.get("silicon") else None)
        click.echo(f"wrote {out_dir}/README.md and predicted_vs_measured.png", err=True)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gpus", "gpus", type=click.IntRange(min=1), default=8, show_default=True,
              help="EP size for the per-GPU figures (contiguous placement: expert e on GPU e // (E/GPUs)).")
@click.option("--gpus-per-node", type=click.IntRange(min=1), default=8, show_default=True,
              help="For distinct nodes per token.")
@click.option("--key", default=None, help="Array name inside .npz/.json/.pt files (default: the usual names).")
@click.option("--step", default="mean", show_default=True, help="Time series: a step index, or mean.")
@click.option("--kind", type=click.Choice(["auto", "trace", "histogram"]), default="auto", show_default=True,
              help="What the file holds; auto reads it from the entry's name (needed for a bare 3-D int array).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def stats(paths: tuple[Path, ...], gpus: int, gpus_per_node: int, key: str | None, step: str, kind: str,
          as_json: bool) -> None:
    """Summarise a router trace or load histogram (several files: one dump's per-rank files, merged), and fit
    the synthetic law's parameters.

    \b
    Per layer: Gini, max/mean and MaxVio per expert, entropy, per-GPU max/mean and balancedness for an EP
    size, distinct devices and nodes per token (traces), and the zipf alpha that fits the loads, so that
    measured skew can be carried into what-if scenarios (router.stats: {kind: zipf, alpha: ...}).
    Examples:
      moesim stats calibrate/traces/tiny-moe-stdlib.npz --gpus 4 --gpus-per-node 2
      moesim stats expert_distribution_recorder_17500*.pt --gpus 32 --json   (SGLang: stat, or every rank's file)
      moesim stats eplb_state.pt --gpus 32   (vLLM EplbModelState tensors, torch.save)
    """
    from moesim.present.tables import stats_table
    from moesim.routing.analysis import summarize_file
    doc = summarize_file(list(paths) if len(paths) > 1 else paths[0], gpus, gpus_per_node, key, step, kind)
    click.echo(dumps(doc, indent=1, sort_keys=True) if as_json else stats_table(doc), nl=as_json)


@main.command(name="compare")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--placements", type=PLACEMENT_LIST, default="contiguous,round_robin,eplb", show_default=True,
              help="Comma-separated placement kinds (see `moesim list placements`).")
@click.option("--redundant", default=None, help="Comma-separated redundant-expert counts, e.g. 0,16,32 "
              "(default: the scenario's).")
@click.option("--replica-policy", type=click.Choice(["round_robin", "even", "random", "nearest"]), default=None)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per variant (a JSON list).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write compare.json, compare.csv and compare.png here.")
@parquet.FORMAT
def compare_cmd(scenario: Path, placements: str, redundant: str | None, replica_policy: str | None,
                overrides: tuple[str, ...], as_json: bool, out_dir: Path | None, table_format: str) -> None:
    """Compare expert placements on the same scenario and the same router draws.

    \b
    Prints iteration time, throughput, GPU load max/mean, inter-node bytes and the extra memory the
    replicas take, one row per variant. A variant that cannot run (e.g. greedy with replicas) shows its
    error; the others still run.
    Example:
      moesim compare scenarios/deepseek-v3-prefill-h800.yaml --placements contiguous,eplb --redundant 0,32
    """
    from moesim.studies.compare import Interrupted, compare, variants
    from moesim.util.progress import Progress
    kinds = [k.strip() for k in placements.split(",") if k.strip()]
    try:
        reds = [int(x) for x in redundant.split(",")] if redundant else None
    except ValueError:
        raise MoesimError(f"--redundant: {redundant!r} is not a comma-separated list of integers") from None
    api.load_scenario(scenario, list(overrides))  # bad base scenario: one clear error before any run
    parquet.check(table_format, out_dir)
    bar = Progress("compare", len(variants(kinds, reds)))
    try:
        rows, stopped = compare(scenario, list(overrides), kinds, reds, replica_policy, bar.step), False
    except Interrupted as exc:
        rows, stopped = exc.rows, True
    bar.close()
    from moesim.cli.study import finish_compare
    finish_compare(rows, scenario, out_dir, as_json, stopped, lambda: parquet.write(table_format, out_dir))


@main.command(name="rebalance")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--iterations", type=int, default=12, show_default=True)
@click.option("--every", type=int, default=4, show_default=True, help="Re-plan every N iterations.")
@click.option("--window", type=int, default=4, show_default=True, help="Steps of statistics a re-plan averages.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {rows, summary} as JSON.")
def rebalance_cmd(scenario: Path, iterations: int, every: int, window: int, overrides: tuple[str, ...],
                  as_json: bool) -> None:
    """Re-plan the placement every N iterations as the router statistics drift; count what it moves.

    \b
    Needs drifting statistics (router.stats.drift > 0). Each re-plan moves the expert weights of every
    slot whose expert changed and stalls for the slowest GPU's transfer over its NIC. The static column
    keeps the first plan. Example:
      moesim rebalance scenarios/deepseek-v3-decode-h800.yaml --set router.stats.drift=0.05 \\
          --set placement.kind=eplb --iterations 12 --every 4
    """
    from moesim.present.tables import rebalance_table
    from moesim.studies.compare import Interrupted
    from moesim.studies.rebalance import rebalance_study, summarize
    from moesim.util.progress import Progress
    if iterations < 1 or every < 1 or window < 1:
        raise MoesimError("--iterations, --every and --window must be at least 1")
    s = api.load_scenario(scenario, list(overrides))
    bar = Progress("rebalance", iterations)
    try:
        rows, stopped = rebalance_study(s, iterations, every, window, bar.step), False
    except Interrupted as exc:
        rows, stopped = exc.rows, True
    bar.close()
    summary = summarize(rows, every)
    click.echo(dumps({"rows": rows, "summary": summary}, indent=1) if as_json else rebalance_table(rows, summary),
               nl=as_json)
    if stopped:
        click.echo(f"interrupted after {len(rows)} of {iterations} iterations (their rows are above)", err=True)
        sys.exit(stop_code())


@main.command(name="plan")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--executor", "executor_kind", type=EXECUTOR, default="local", show_default=True,
              help="local: a pool of processes here; serial: one after another; ray: tasks on a Ray cluster "
                   "(pip install 'moesim[ray]'); plan tasks name files (arrival traces) by path: workers must see "
                   "them at the same path.")
@click.option("--address", default=None, help="Ray cluster to join (default: a local Ray instance for this run).")
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes (default: one per CPU core).")
@click.option("--no-cache", is_flag=True, help="Rebuild iteration surfaces instead of reading the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print rows, answers, runners-up and frontier as JSON.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write plan.json and plan.csv (for `moesim report`).")
@click.option("--emit", "emit", type=RegistryChoice("moesim.launch:LAUNCHERS"), multiple=True,
              help="Write the answer's launch files for this engine in OUT/launch-ENGINE (as export-launch).")
@parquet.FORMAT
def plan_cmd(plan_file: Path, executor_kind: str, address: str | None, jobs: int, no_cache: bool, as_json: bool,
             out_dir: Path | None, emit: tuple[str, ...], table_format: str) -> None:
    """Find the cheapest deployment that serves a throughput target within TTFT/TPOT SLOs.

    \b
    PLAN.yaml:
      model: deepseek-v3
      gpus: {h100: {price_per_hour: 2.2}, h200: {price_per_hour: 3.2}}   # USD per GPU-hour
      gpus_per_node: 8
      serving:                                  # the request stream and SLOs (rate: searched)
        input_tokens: {kind: constant, value: 4000}
        output_tokens: {kind: constant, value: 1000}
        slo: {ttft_s: 2.0, tpot_s: 0.03, percentile: 90}
      target: {output_tokens_per_s: 7000}
      limits: {max_gpus: 64}
      search: {nodes: [2, 4, 8], deployment: [aggregated, disaggregated], max_batch: [8, 16, 32, 64]}
    Search axes: GPU type x nodes x shape (aggregated with every whole-node EP size; disaggregated
    with prefill_share) x micro_batches x placement x redundant_slots (the redundant-expert count is
    derived per EP size) x node_limit x attention_tp; max_batch is searched upwards per deployment.
    Each deployment's capacity is the highest request rate whose serving run meets the SLO. Infeasible
    deployments say why. Progress and ETA go to stderr; Ctrl-C stops and keeps what finished.
    """
    from moesim.cli.formats import check_emit, emit_launches
    from moesim.cli.serve import finish_plan
    from moesim.exec import make_executor
    from moesim.plan import load_plan, plan
    from moesim.util.errors import ScenarioError
    from moesim.util.files import write_atomic
    from moesim.util.progress import Phases

    p, path = load_plan(plan_file)
    check_emit(emit, out_dir)
    parquet.check(table_format, out_dir)
    try:
        result = plan(p, path.parent, make_executor(executor_kind, jobs, address), Phases("plan"), not no_cache,
                      write_atomic)
    except ScenarioError as err:
        raise err.located(file=str(plan_file)) from None
    emit_launches(p, path, result, emit, out_dir)
    finish_plan(result, out_dir, as_json, lambda: parquet.write(table_format, out_dir))

from moesim.cli.formats import export_launch, export_placement  # noqa: E402 (own modules; registered here)
from moesim.cli.results import report_cmd, sweep_cmd  # noqa: E402
from moesim.cli.serve import serve_cmd  # noqa: E402

main.add_command(sweep_cmd)
main.add_command(report_cmd)
main.add_command(serve_cmd)
main.add_command(export_placement)
main.add_command(export_launch)
