"""Plain-text tables the commands print (the CLI only echoes them). Pure: documents in, text out."""

from __future__ import annotations

import json
from typing import Any

from moesim.config import catalog


def models_table() -> str:
    lines = [f"{'name':<20}{'hidden':>7}{'inter':>7}{'experts':>8}{'top-k':>6}{'shared':>7}{'layers':>7}"
             f"{'groups':>8}  weights  source"]
    for name in catalog.model_names():
        m = catalog.model_entry(name)
        groups = f"{m.get('n_group', 1)}/{m.get('topk_group', m.get('n_group', 1))}"
        lines.append(f"{name:<20}{m['hidden_size']:>7}{m['moe_intermediate_size']:>7}{m['n_routed_experts']:>8}"
                     f"{m['num_experts_per_tok']:>6}{m.get('n_shared_experts', 0):>7}{m['num_hidden_layers']:>7}"
                     f"{groups:>8}  {m['weight_dtype']:<7}  {m['source']}")
    return "\n".join(lines) + "\n"


def gpus_table() -> str:
    lines = []
    for name in catalog.gpu_names():
        values, prov = catalog.split_figures(catalog.gpu_entry(name))
        lines.append(f"{name}: {values['name']}")
        lines += [f"  {key:<20} {values[key]:<12g} {prov[key]}" for key in sorted(prov)]
    for name in catalog.profile_names():
        doc = json.loads((catalog.profile_dir() / f"{name}.json").read_text(encoding="utf-8"))
        prov = doc["provenance"]
        if catalog.profile_kind(doc) == "silicon":
            lines.append(f"{name}: {prov['device_name']} (silicon profile: {prov['tool']}, {prov['framework']}, "
                         f"{prov['kernel']}; imported {prov['imported_on']})")
            continue
        lines.append(f"{name}: {prov['device_name']} (measured profile, {prov['date_utc']}, torch {prov['torch']}, "
                     f"{prov['threads']} thread(s), grid {prov['grid_name']})")
    return "\n".join(lines) + "\n"


def hosts_table() -> str:
    """``moesim list hosts``: every host machine's figures with label and source."""
    lines = []
    for name in catalog.host_names():
        values, prov = catalog.split_figures(catalog.host_entry(name))
        lines.append(f"{name}: {values['name']}")
        lines += [f"  {key:<22} {values[key]!s:<14} {prov[key]}" if isinstance(values[key], (str, bool)) else
                  f"  {key:<22} {values[key]:<14g} {prov[key]}" for key in sorted(prov)]
    return "\n".join(lines) + "\n"


def stats_table(doc: dict[str, Any]) -> str:
    """``moesim stats``: one line per layer, then the fitted law to paste into a scenario."""
    trace = doc["kind"] == "trace"
    head = (f"{'layer':>5} {'gini':>6} {'max/mean':>8} {'MaxVio':>7} {'entropy':>7} {'GPU max/mean':>12} "
            f"{'balanced':>8} {'zipf a':>6}") + (f" {'dev/token':>9} {'nodes/token':>11}" if trace else "")
    lines = [f"{doc['kind']} {doc['source']}: {doc['layers_count']} layers x {doc['experts']} experts, "
             f"EP {doc['gpus']}", head]
    for i, r in enumerate(doc["layers"]):
        line = (f"{i:>5} {r['gini']:>6.3f} {r['expert_max_over_mean']:>8.2f} {r['max_vio']:>7.2f} {r['entropy']:>7.3f}"
                f" {r['gpu_max_over_mean']:>12.2f} {r['balancedness']:>8.3f} {r['zipf_alpha']:>6.2f}")
        if trace:
            line += f" {r['devices_per_token']:>9.2f} {r['nodes_per_token']:>11.2f}"
        lines.append(line)
    lines.append(f"mean Gini {doc['mean_gini']:.3f}; to carry this skew into a scenario: "
                 f"router: {{stats: {json.dumps(doc['suggested_stats'])}}}")
    return "\n".join(lines) + "\n"


def rebalance_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [f"{'iter':>4} {'re-plan':>7} {'iter ms':>9} {'stall ms':>9} {'moved GiB':>9} {'GPU max/mean':>12}"
             f" {'static ms':>10} {'static max/mean':>15}"]
    for r in rows:
        lines.append(f"{r['iteration']:>4} {'yes' if r['replanned'] else '':>7} {r['iteration_time_s'] * 1e3:>9.3f}"
                     f" {r['stall_s'] * 1e3:>9.3f} {r['moved_bytes'] / 2**30:>9.3f} "
                     f"{r['gpu_load_max_over_mean']:>12.3f} {r['static_iteration_time_s'] * 1e3:>10.3f} "
                     f"{r['static_gpu_load_max_over_mean']:>15.3f}")
    fmt = lambda x: f"{x:,.0f}" if x else "-"  # noqa: E731
    lines.append(f"tokens/s with re-planning: before {fmt(summary['throughput_before'])}, during "
                 f"{fmt(summary['throughput_during'])}, after {fmt(summary['throughput_after'])}, overall "
                 f"{fmt(summary['throughput_overall'])}; first plan kept: "
                 f"{fmt(summary['static_throughput_overall'])}; {summary['replans']} re-plans moved "
                 f"{summary['moved_bytes_total'] / 2**30:.2f} GiB")
    return "\n".join(lines) + "\n"


def sweep_text(summary: dict[str, Any], out_dir: Any, metric_keys: set[str]) -> str:
    from moesim.studies.objective import OBJECTIVES, per_gpu
    text = (f"{summary['points']} points: {summary['ran']} ran, {summary['cached']} cached, {summary['failed']} "
            f"failed ({summary['invalid']} invalid); results in {out_dir}/results.csv\n")
    if summary["best"]:
        b = summary["best"]
        o = OBJECTIVES.get(summary.get("objective", "throughput-per-gpu"))
        params = {k: v for k, v in b.items() if k != "key" and k not in metric_keys}
        gpu = per_gpu(b)
        text += (f"best by {o.phrase} (--objective {o.name}): {json.dumps(params)}: "
                 f"{b['throughput_tokens_per_s']:,.0f} tokens/s"
                 + (f", {gpu:,.0f} tokens/s/GPU" if gpu else "") + f" on {b.get('gpus', '?')} GPUs, iteration "
                 f"{b['iteration_time_s'] * 1e3:,.4g} ms"
                 + (f", {o.value(b, summary.get('prices')):,.4g} {o.unit}" if o.name == "cost" else "") + "\n")
    return text


def _ms(x: Any) -> str:
    return "-" if x is None else f"{x * 1e3:,.0f}"


def plan_table(result: dict[str, Any]) -> str:
    """Every evaluated row, then the answer per GPU type and overall, runners-up and the frontier size."""
    slo = result["slo"]
    p = slo["percentile"]
    lines = [f"SLO: p{p} TTFT <= {slo['ttft_s'] * 1e3:g} ms, p{p} TPOT <= {slo['tpot_s'] * 1e3:g} ms; scope "
             f"{result['throughput_scope']}",
             f"{'deployment':<44}{'batch':>6}{'tok/s':>10}{'tok/s/GPU':>10}{f'TTFT p{p}':>9}{f'TPOT p{p}':>9}"
             f"{'$/h':>8}{'$/Mtok':>8}  note"]
    for r in result["rows"]:
        cpm = f"{r['cost_per_million_tokens']:.2f}" if r["cost_per_million_tokens"] else "-"
        tput = f"{r['output_tokens_per_s']:,.0f}" if r["output_tokens_per_s"] else "-"
        per = f"{r['output_tokens_per_s_per_gpu']:,.1f}" if r["output_tokens_per_s_per_gpu"] else "-"
        note = r["reason"] or ("meets the target" if r["meets_target"] else "below the target")
        lines.append(f"{r['label']:<44}{r['max_batch'] or '-':>6}{tput:>10}{per:>10}"
                     f"{_ms(r['ttft_slo_s']):>9}{_ms(r['tpot_slo_s']):>9}{r['cost_per_hour']:>8,.0f}"
                     f"{cpm:>8}  {note}")  # the whole note (cut at 90 it read "no room for a KV cach")
    lines.append("")
    for gpu, r in result["best_per_gpu"].items():
        lines.append(f"{gpu}: " + (_answer(r) if r else "no deployment meets the target and the SLO"))
    b = result["best"]
    head = ("overall so far (interrupted: partial)" if result["interrupted"] else  # not the search's answer
            "overall so far (stopped at limits.max_hours: partial)" if result.get("stopped") else "overall")
    if b:
        lines.append(f"{head}: " + _answer(b))
    elif head != "overall":
        lines.append(f"{head}: nothing meets the target at the SLO among the deployments that finished")
    else:
        lines.append("overall: nothing meets the target at the SLO: see the notes, add nodes or GPU types, or relax it")
    t = result.get("best_per_token")
    if t and b and t["label"] != b["label"]:
        lines.append("lowest cost per token at the SLO capacity: " + _answer(t))
    lines += [f"  runner-up {r['label']}, max_batch {r['max_batch']}: {100 * r['cost_over_best']:.0f}% more per "
              f"hour, ${r['cost_per_million_tokens']:.2f}/Mtok" for r in result["runners_up"]]
    c = result["counts"]
    lines.append(f"{c['deployments']} deployments: {c['simulated']} simulated, {c['screened_out']} screened out or "
                 f"pruned; cost/throughput frontier: {len(result['frontier'])} rows; {result['wall_s']:.0f} s"
                 + ("; INTERRUPTED: partial results" if result["interrupted"] else "")
                 + (f"; STOPPED: {result['stopped']}" if result.get("stopped") else ""))
    return "\n".join(lines) + "\n"


def _answer(r: dict[str, Any]) -> str:
    nodes = f"{r['nodes']} node{'' if r['nodes'] == 1 else 's'}"
    return (f"{r['gpus']} GPUs ({nodes}), {r['label']}, max_batch {r['max_batch']}: "
            f"{r['output_tokens_per_s']:,.0f} output tokens/s at the SLO "
            f"({r['output_tokens_per_s_per_gpu']:,.1f} per GPU), ${r['cost_per_hour']:,.2f}/h, "
            f"${r['cost_per_million_tokens']:.2f}/Mtok")
