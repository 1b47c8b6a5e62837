"""The ``moesim`` command line: a thin layer that turns arguments into moesim.api calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from moesim import __version__, api, catalog
from moesim.errors import MoesimError

SET_HELP = "Override a scenario field by dotted path, e.g. --set router.top_k=4 --set cluster.nodes=8 (repeatable)."


class _Group(click.Group):
    """Turns every MoesimError into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MoesimError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moesim")
def main() -> None:
    """Simulate Mixture-of-Experts models on GPU clusters.

    \b
    Start from a shipped scenario:
      moesim run scenarios/deepseek-v3-prefill-h800.yaml
      moesim run scenarios/deepseek-v3-prefill-h800.yaml --set cluster.nodes=8 --json
      moesim list models
    """


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the table.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write result.json, layers.csv and gpus.csv into this folder.")
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a Chrome trace of the iteration (open it in https://ui.perfetto.dev).")
def run(scenario: Path, overrides: tuple[str, ...], as_json: bool, out_dir: Path | None,
        trace_file: Path | None) -> None:
    """Simulate one forward iteration through every MoE layer of SCENARIO (a YAML file).

    Prints MoE-layer throughput, iteration time, the per-layer split into route / dispatch / experts /
    combine / waiting, GPU load imbalance and bytes inside and between nodes.
    """
    from moesim import api, output

    result = api.run(scenario, overrides)
    click.echo(output.to_json(result.summary) if as_json else output.table(result.summary), nl=False)
    if out_dir:
        loads = [st.gpu_tokens for st in result.built.stats]
        for path in output.write_outputs(out_dir, result.summary, loads):
            click.echo(f"wrote {path}", err=True)
    if trace_file:
        output.write_atomic(trace_file, output.chrome_trace(result.records, result.summary["gpus_per_node"]))
        click.echo(f"wrote {trace_file}", err=True)


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
def check(scenario: Path, overrides: tuple[str, ...]) -> None:
    """Validate SCENARIO without simulating; print the resolved configuration as YAML."""
    import yaml

    from moesim.config import load_scenario

    s = load_scenario(scenario, overrides)
    click.echo(yaml.safe_dump(s.model_dump(exclude={"cluster": {"gpu_provenance"}}), sort_keys=False), nl=False)


@main.command(name="list")
@click.argument("what", type=click.Choice(["models", "gpus"]))
def list_(what: str) -> None:
    """List the catalogue: real MoE models, or GPUs with each figure's label (datasheet/published/estimated)."""
    if what == "models":
        click.echo(f"{'name':<20}{'hidden':>7}{'inter':>7}{'experts':>8}{'top-k':>6}{'shared':>7}{'layers':>7}"
                   f"{'groups':>8}  weights  source")
        for name in catalog.model_names():
            m = catalog.model_entry(name)
            groups = f"{m.get('n_group', 1)}/{m.get('topk_group', m.get('n_group', 1))}"
            click.echo(f"{name:<20}{m['hidden_size']:>7}{m['moe_intermediate_size']:>7}{m['n_routed_experts']:>8}"
                       f"{m['num_experts_per_tok']:>6}{m.get('n_shared_experts', 0):>7}{m['num_hidden_layers']:>7}"
                       f"{groups:>8}  {m['weight_dtype']:<7}  {m['source']}")
        return
    for name in catalog.gpu_names():
        values, prov = catalog.split_figures(catalog.gpu_entry(name))
        click.echo(f"{name}: {values['name']}")
        for key in sorted(prov):
            click.echo(f"  {key:<20} {values[key]:<12g} {prov[key]}")
    for name in catalog.profile_names():
        doc = json.loads((catalog.profile_dir() / f"{name}.json").read_text(encoding="utf-8"))
        prov = doc["provenance"]
        click.echo(f"{name}: {prov['device_name']} (measured profile, {prov['date_utc']}, torch {prov['torch']}, "
                   f"{prov['threads']} thread(s), grid {prov['grid_name']})")


@main.command()
@click.option("--profile", default="cpu-ref", show_default=True,
              help="A measured profile: a name from `moesim list gpus` or a path to its JSON file.")
@click.option("--stored/--live", default=True, show_default=True,
              help="--stored re-predicts the measurements kept beside the profile (no torch, no timing); "
                   "--live measures the held-out layers again on this machine first (needs torch).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write a report (README.md + predicted_vs_measured.png) to this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print rows, errors and the DeepEP table as JSON.")
def validate(profile: str, stored: bool, out_dir: Path | None, as_json: bool) -> None:
    """Compare the simulator's predictions with measured MoE layers it was not fitted on.

    \b
    Per piece and end to end: MAPE, P90 and max absolute percentage error, signed mean error (bias).
    Also simulates DeepEP's published all-to-all benchmark with the catalogue H800 and prints the error.
    Example:  moesim validate --profile cpu-ref -o reports/validation-cpu-ref
    """
    from moesim.report_validation import tables, write_report  # noqa: PLC0415
    from moesim.validation import deepep_rows, deepseek_serving_rows, predict_all, summarize_errors  # noqa: PLC0415

    path = Path(profile) if profile.endswith(".json") else catalog.profile_dir() / f"{profile}.json"
    if not path.is_file():
        raise MoesimError(f"--profile: no profile {profile!r}; choose one of {catalog.profile_names()} "
                          "or give a path to a calibrate/ profile JSON")
    if not stored:
        try:
            from calibrate.validate import main as live  # noqa: PLC0415
        except ImportError as exc:
            raise MoesimError(f"--live needs torch and the calibrate package ({exc}); "
                              "run `pip install -e '.[calibrate]'` in a moesim checkout") from None
        live(["--profile", str(path)])
    vpath = path.with_name(path.stem + ".validation.json")
    if not vpath.is_file():
        raise MoesimError(f"--profile: {profile!r} has no stored validation ({vpath.name}); "
                          "run `moesim validate --live` or `python -m calibrate.validate` first")
    data = json.loads(vpath.read_text(encoding="utf-8"))
    rows = predict_all(str(path), data)
    errors = summarize_errors(rows)
    deepep, serving = deepep_rows(), deepseek_serving_rows()
    if as_json:
        click.echo(json.dumps({"profile": path.stem, "rows": rows, "errors": errors, "deepep": deepep,
                               "deepseek_serving": serving}, indent=1, sort_keys=True))
    else:
        click.echo(tables(rows, errors, deepep, serving))
    if out_dir:
        write_report(out_dir, path.stem, rows, errors, deepep, data["command"],
                     data.get("drift", {}).get("median_ratio_now_over_calibration"), serving)
        click.echo(f"wrote {out_dir}/README.md and predicted_vs_measured.png", err=True)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gpus", "gpus", type=int, default=8, show_default=True,
              help="EP size for the per-GPU figures (contiguous placement: expert e on GPU e // (E/GPUs)).")
@click.option("--gpus-per-node", type=int, default=8, show_default=True, help="For distinct nodes per token.")
@click.option("--key", default=None, help="Array name inside .npz/.json/.pt files (default: the usual names).")
@click.option("--step", default="mean", show_default=True, help="Time series: a step index, or mean.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def stats(path: Path, gpus: int, gpus_per_node: int, key: str | None, step: str, as_json: bool) -> None:
    """Summarise a router trace or load histogram, and fit the synthetic law's parameters.

    \b
    Per layer: Gini, max/mean and MaxVio per expert, entropy, per-GPU max/mean and balancedness for an EP
    size, distinct devices and nodes per token (traces), and the zipf alpha that fits the loads, so that
    measured skew can be carried into what-if scenarios (router.stats: {kind: zipf, alpha: ...}).
    Examples:
      moesim stats calibrate/traces/tiny-moe-stdlib.npz --gpus 4 --gpus-per-node 2
      moesim stats sglang_dump.pt --key logical_count --gpus 32 --json
    """
    import numpy as np  # noqa: PLC0415

    from moesim.routing.analysis import summarize_source  # noqa: PLC0415
    from moesim.routing.sources import SourceError, load_array  # noqa: PLC0415

    try:
        arr, extra = load_array(path, key, ("topk_ids", "ids", "logical_count", "expert_load_window",
                                           "expert_load_pass", "weight", "counts", "loads"))
    except (SourceError, OSError, ValueError) as exc:
        raise MoesimError(f"{path}: {exc}") from None
    trace = None
    if np.issubdtype(np.asarray(arr).dtype, np.integer) and np.asarray(arr).ndim == 3 and key != "logical_count":
        trace = np.asarray(arr, dtype=np.int64)
        experts = int(extra.get("num_experts", trace.max() + 1))
        loads = np.stack([np.bincount(layer.ravel(), minlength=experts) for layer in trace]).astype(float)
    else:
        a = np.asarray(arr, dtype=float)
        loads = a if a.ndim == 2 else (a.mean(axis=0) if step == "mean" else a[int(step)])
    if loads.shape[1] % gpus:
        raise MoesimError(f"--gpus: {loads.shape[1]} experts do not split evenly over {gpus} GPUs; "
                          f"choose a divisor of {loads.shape[1]}")
    doc = summarize_source(loads, gpus, trace, gpus_per_node)
    doc["source"] = str(path)
    doc["kind"] = "trace" if trace is not None else "histogram"
    if as_json:
        click.echo(json.dumps(doc, indent=1, sort_keys=True))
        return
    head = f"{'layer':>5} {'gini':>6} {'max/mean':>8} {'MaxVio':>7} {'entropy':>7} {'GPU max/mean':>12} " \
           f"{'balanced':>8} {'zipf a':>6}"
    if trace is not None:
        head += f" {'dev/token':>9} {'nodes/token':>11}"
    click.echo(f"{doc['kind']} {path}: {loads.shape[0]} layers x {loads.shape[1]} experts, EP {gpus}")
    click.echo(head)
    for i, r in enumerate(doc["layers"]):
        line = (f"{i:>5} {r['gini']:>6.3f} {r['expert_max_over_mean']:>8.2f} {r['max_vio']:>7.2f} {r['entropy']:>7.3f}"
                f" {r['gpu_max_over_mean']:>12.2f} {r['balancedness']:>8.3f} {r['zipf_alpha']:>6.2f}")
        if trace is not None:
            line += f" {r['devices_per_token']:>9.2f} {r['nodes_per_token']:>11.2f}"
        click.echo(line)
    click.echo(f"mean Gini {doc['mean_gini']:.3f}; to carry this skew into a scenario: "
               f"router: {{stats: {json.dumps(doc['suggested_stats'])}}}")


@main.command(name="compare")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--placements", default="contiguous,round_robin,eplb", show_default=True,
              help="Comma-separated placement kinds: contiguous, round_robin, random, greedy, eplb, "
                   "eplb_hierarchical, eplb_global, optimal.")
@click.option("--redundant", default=None, help="Comma-separated redundant-expert counts, e.g. 0,16,32 "
              "(default: the scenario's).")
@click.option("--replica-policy", type=click.Choice(["round_robin", "even", "random", "nearest"]), default=None)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per variant (a JSON list).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write compare.json, compare.csv and compare.png here.")
def compare_cmd(scenario: Path, placements: str, redundant: str | None, replica_policy: str | None,
                overrides: tuple[str, ...], as_json: bool, out_dir: Path | None) -> None:
    """Compare expert placements on the same scenario and the same router draws.

    \b
    Prints iteration time, throughput, GPU load max/mean, inter-node bytes and the extra memory the
    replicas take, one row per variant. A variant that cannot run (e.g. greedy with replicas) shows its
    error; the others still run.
    Example:
      moesim compare scenarios/deepseek-v3-prefill-h800.yaml --placements contiguous,eplb --redundant 0,32
    """
    from moesim.compare import compare, plot, table  # noqa: PLC0415
    from moesim.output import to_csv, to_json, write_atomic  # noqa: PLC0415

    kinds = [k.strip() for k in placements.split(",") if k.strip()]
    try:
        reds = [int(x) for x in redundant.split(",")] if redundant else None
    except ValueError:
        raise MoesimError(f"--redundant: {redundant!r} is not a comma-separated list of integers") from None
    api.load_scenario(scenario, list(overrides))  # bad base scenario: one clear error before any run
    rows = compare(scenario, list(overrides), kinds, reds, replica_policy)
    click.echo(json.dumps(rows, indent=1) if as_json else table(rows))
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out_dir / "compare.json", to_json(rows))
        write_atomic(out_dir / "compare.csv", to_csv(rows))
        plot(rows, out_dir / "compare.png", f"{scenario.stem}: placements on the same router draws")
        click.echo(f"wrote {out_dir}/compare.json, compare.csv, compare.png", err=True)
    if all(r.get("error") for r in rows):
        sys.exit(2)


@main.command(name="export-placement")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_placement(scenario: Path, overrides: tuple[str, ...], out_file: Path) -> None:
    """Write the scenario's expert placement as SGLang's initial expert location JSON.

    \b
    {"physical_to_logical_map": [[...] per model layer]}: dense layers get the trivial mapping. Load it
    with `--init-expert-location PATH` (plus --ep-num-redundant-experts matching the plan).
    """
    from moesim.build import build  # noqa: PLC0415
    from moesim.output import write_atomic  # noqa: PLC0415

    s = api.load_scenario(scenario, list(overrides))
    b = build(s)
    slots = b.placement.phy2log.shape[1]
    rows, moe = [], dict(zip(b.model.moe_layer_ids, b.placement.phy2log.tolist()))
    for layer in range(s.model.num_hidden_layers):
        rows.append(moe.get(layer, [j % b.model.experts for j in range(slots)]))
    doc = {"physical_to_logical_map": rows, "moesim": {"scenario": s.name, "placement": s.placement.kind,
                                                       "redundant_experts": s.placement.redundant_experts,
                                                       "ep_size": s.cluster.num_gpus}}
    write_atomic(out_file, json.dumps(doc) + "\n")
    click.echo(f"wrote {out_file}: {len(rows)} layers x {slots} physical experts (EP {s.cluster.num_gpus})")


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
    from moesim.rebalance import rebalance_study, summarize  # noqa: PLC0415

    if iterations < 1 or every < 1 or window < 1:
        raise MoesimError("--iterations, --every and --window must be at least 1")
    s = api.load_scenario(scenario, list(overrides))
    rows = rebalance_study(s, iterations, every, window)
    summary = summarize(rows, every)
    if as_json:
        click.echo(json.dumps({"rows": rows, "summary": summary}, indent=1))
        return
    click.echo(f"{'iter':>4} {'re-plan':>7} {'iter ms':>9} {'stall ms':>9} {'moved GiB':>9} {'GPU max/mean':>12}"
               f" {'static ms':>10} {'static max/mean':>15}")
    for r in rows:
        click.echo(f"{r['iteration']:>4} {'yes' if r['replanned'] else '':>7} {r['iteration_time_s'] * 1e3:>9.3f}"
                   f" {r['stall_s'] * 1e3:>9.3f} {r['moved_bytes'] / 2**30:>9.3f} {r['gpu_load_max_over_mean']:>12.3f}"
                   f" {r['static_iteration_time_s'] * 1e3:>10.3f} {r['static_gpu_load_max_over_mean']:>15.3f}")
    fmt = lambda x: f"{x:,.0f}" if x else "-"  # noqa: E731
    click.echo(f"tokens/s with re-planning: before {fmt(summary['throughput_before'])}, during "
               f"{fmt(summary['throughput_during'])}, after {fmt(summary['throughput_after'])}, overall "
               f"{fmt(summary['throughput_overall'])}; first plan kept: {fmt(summary['static_throughput_overall'])}; "
               f"{summary['replans']} re-plans moved {summary['moved_bytes_total'] / 2**30:.2f} GiB")


@main.command(name="sweep")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Results folder: results.csv, results.jsonl and a per-point cache (points/).")
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes (default: one per CPU core).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sweep_cmd(sweep_file: Path, out_dir: Path, jobs: int, as_json: bool) -> None:
    """Run a scenario over axes of parameters, in parallel, resuming where an earlier run stopped.

    \b
    SWEEP.yaml:
      base: ../scenarios/deepseek-v3-prefill-h800.yaml   # relative to the sweep file
      set: [model.num_hidden_layers=13]                   # optional overrides for every point
      grid: {cluster.nodes: [2, 4, 8], placement.kind: [contiguous, eplb]}   # cartesian product
      zip: {workload.tokens_per_gpu: [1024, 4096], sim.sampled_tokens: [16384, 65536]}  # stepped together
    Points are cached by a hash of their resolved scenario: run the same command again and only missing
    (or failed) points run. A point that fails is recorded with its error; the sweep goes on.
    """
    import os  # noqa: PLC0415

    from moesim.sweep import LocalProcessExecutor, load_sweep, run_sweep  # noqa: PLC0415

    spec = load_sweep(sweep_file)
    executor = LocalProcessExecutor(jobs or os.cpu_count() or 1)
    with click.progressbar(length=len(spec.points()), label="points", file=sys.stderr) as bar:
        state = {"n": 0}

        def progress(done: int, total: int) -> None:
            bar.update(done - state["n"])
            state["n"] = done

        summary = run_sweep(spec, out_dir, executor, progress)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(f"{summary['points']} points: {summary['ran']} ran, {summary['cached']} cached, "
               f"{summary['failed']} failed ({summary['invalid']} invalid); results in {out_dir}/results.csv")
    if summary["best"]:
        b = summary["best"]
        params = {k: v for k, v in b.items() if k not in ("key",) and k not in _SWEEP_METRIC_KEYS}
        click.echo(f"best throughput {b['throughput_tokens_per_s']:,.0f} tokens/s at {json.dumps(params)}")


_SWEEP_METRIC_KEYS = {"iteration_time_s", "throughput_tokens_per_s", "tokens_per_iteration", "gpu_load_max_over_mean",
                      "mean_layer_gpu_load_max_over_mean", "inter_node_bytes", "intra_node_bytes", "dropped_tokens",
                      "dispatch_s", "expert_s", "combine_s", "error"}


@main.command(name="report")
@click.argument("results", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--title", default=None, help="Page title (default: 'moesim <kind> report').")
def report_cmd(results: Path, out_dir: Path, title: str | None) -> None:
    """Write an HTML page (figures embedded, opens offline) and a Markdown page from results.

    \b
    RESULTS is the folder written by `moesim run -o`, `moesim compare -o` or `moesim sweep -o`.
    Summary and recommendation first, then figures (per-layer time split, GPU x layer load heatmap,
    inter-node bytes; placements side by side; throughput against the swept axis), then every row.
    """
    from moesim.report import write_report  # noqa: PLC0415

    for path in write_report(results, out_dir, title):
        click.echo(f"wrote {path}")


@main.command(name="plan")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes (default: one per CPU core).")
@click.option("--json", "as_json", is_flag=True, help="Print rows, best, runners-up and frontier as JSON.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write plan.json and plan.csv (for `moesim report`).")
def plan_cmd(plan_file: Path, jobs: int, as_json: bool, out_dir: Path | None) -> None:
    """Find the cheapest GPU type and layout that meets a throughput target.

    \b
    PLAN.yaml:
      model: deepseek-v3
      gpus: {h800: {price_per_hour: 2.0}, h200: {price_per_hour: 3.5}}   # USD per GPU-hour
      gpus_per_node: 8
      workload: {mode: decode, tokens_per_gpu: 128, context_tokens: 4096}
      target: {throughput_tokens_per_s: 200000}
      limits: {max_gpus: 256}
      vary: {nodes: [4, 8, 18], placement: [contiguous, eplb], redundant_experts: [32], node_limit: [null, 4]}
    Candidates that do not validate or do not fit in memory (experts with replicas, replicated attention
    and dense weights, KV cache) are infeasible and say why. Throughput covers the MoE layers only.
    """
    import os  # noqa: PLC0415

    from moesim.output import to_csv, to_json, write_atomic  # noqa: PLC0415
    from moesim.plan import load_plan, plan  # noqa: PLC0415
    from moesim.sweep import LocalProcessExecutor  # noqa: PLC0415

    p = load_plan(plan_file)
    result = plan(p, LocalProcessExecutor(jobs or os.cpu_count() or 1))
    if out_dir:
        write_atomic(out_dir / "plan.json", to_json(result))
        write_atomic(out_dir / "plan.csv", to_csv(result["rows"]))
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(f"{'gpu':<10}{'nodes':>6}{'GPUs':>6} {'placement':<12}{'red':>4}{'limit':>6}{'tokens/s':>13}"
               f"{'$/h':>9}{'$/M tok':>9}{'GiB/GPU':>9}  note")
    for r in result["rows"]:
        note = "" if r["feasible"] and not r["reason"] else (r["reason"] or "")
        if r["feasible"] and not r["memory_checked"]:
            note = "memory not checked: the model gives no attention shape " + note
        mark = " <- best" if result["best"] and r == result["best"] else ""
        cpm = f"{r['cost_per_million_tokens']:.3f}" if r["cost_per_million_tokens"] else "-"
        click.echo(f"{r['gpu']:<10}{r['nodes']:>6}{r['gpus']:>6} {r['placement']:<12}{r['redundant_experts']:>4}"
                   f"{r['node_limit'] or '-':>6}{r['throughput_tokens_per_s']:>13,.0f}{r['cost_per_hour']:>9.1f}"
                   f"{cpm:>9}{r['memory_per_gpu_gib']:>9.1f}  {note[:70]}{mark}")
    b = result["best"]
    if b:
        click.echo(f"cheapest meeting the target: {b['gpus']} x {b['gpu']} ({b['nodes']} nodes), {b['placement']} "
                   f"+{b['redundant_experts']} redundant, node limit {b['node_limit'] or 'none'}: "
                   f"{b['throughput_tokens_per_s']:,.0f} MoE-layer tokens/s for ${b['cost_per_hour']:.2f}/h")
        for r in result["runners_up"]:
            click.echo(f"  runner-up {r['gpus']} x {r['gpu']} {r['placement']} +{r['redundant_experts']}: "
                       f"{100 * r['cost_over_best']:.0f}% more per hour, {r['throughput_tokens_per_s']:,.0f} tokens/s")
    else:
        click.echo("no feasible candidate meets the target: see the notes above, add nodes or GPU types")
    click.echo(f"cost/throughput frontier: {len(result['frontier'])} candidates (see --json or -o)")
