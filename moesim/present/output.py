"""Outputs: a readable table, JSON, per-GPU and per-layer CSVs (the Chrome/Perfetto trace: ``moesim.present.trace``).

Files are written atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moesim.iteration.summary import Summary
from moesim.util.files import columns_to_csv, to_csv, to_json, write_atomic


def _fmt_bytes(x: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(x) < 1000 or unit == "TB":
            return f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} TB"


# per-layer table columns: stage names (a bwd_ prefix counts for the same column) summed into each
COLUMNS = (("dispatch", ("dispatch",)), ("experts", ("routed_experts", "shared_experts", "regroup")),
           ("combine", ("combine",)),
           ("attention", ("attention_proj", "attention_core", "norms", "dense_ffn", "tp_allreduce")))


def _col(stages: dict[str, float], names: tuple[str, ...]) -> float:
    return sum(v for k, v in stages.items() if k.removeprefix("bwd_") in names)


def _throughput_line(s: Summary) -> str:
    if s.scope == "whole_model":
        return (f"  model throughput      {s.throughput_tokens_per_s:,.0f} tokens/s   (whole model, context "
                f"{s.context_tokens:,} tokens): {s.tokens_per_s_per_gpu:,.0f} per GPU, "
                f"{s.tokens_per_s_per_node:,.0f} per node")
    return (f"  MoE-layer throughput  {s.throughput_tokens_per_s:,.0f} tokens/s   (MoE layers only): "
            f"{s.tokens_per_s_per_gpu:,.0f} per GPU, {s.tokens_per_s_per_node:,.0f} per node")


def table(s: Summary, max_layers: int = 12) -> str:
    """The human-readable summary printed by ``moesim run``."""
    m, tot, it = s.meta, s.totals, s.iteration_time_s
    lines = [
        f"{m['scenario']}: {m['model']} on {m['nodes']}x{m['gpus_per_node']} {m['gpu']}, {m['mode']}, "
        f"{m['tokens_per_gpu']} tokens/GPU, {m['moe_layers']} MoE layers, scope {s.scope}",
        _throughput_line(s),
        f"  iteration time        {it * 1e3:.3f} ms",
        f"  GPU load max/mean     {tot.mean_layer_gpu_load_max_over_mean:.3f} (mean over layers)",
        f"  bytes                 {_fmt_bytes(tot.intra_node_bytes)} inside nodes, "
        f"{_fmt_bytes(tot.inter_node_bytes)} between nodes",
        f"  dropped tokens        {tot.dropped_tokens:,.0f}",
        f"  memory per GPU        {_memory_line(m.get('memory_per_gpu', {}))}",
        f"  fidelity              network {m['fidelity']['network']}, routing {m['fidelity']['routing']}",
        "",
        "  where the time goes (critical path: each layer on the GPU that finished it last):",
    ]
    w = max([22] + [len(n) for n in s.stage_names])  # MTP's mtp_draft_* names run longer
    for name in s.stage_names:
        if tot.stages.get(name):
            lines.append(f"    {name:<{w}} {tot.stages[name] * 1e3:10.3f} ms  {tot.stages[name] / it * 100:5.1f}%")
    lines.append(f"    {'waiting':<{w}} {tot.waiting_s * 1e3:10.3f} ms  {tot.waiting_s / it * 100 if it else 0:5.1f}%")
    if len(s.micro_batches) > 1:
        lines.append("  micro-batches: " + ", ".join(f"{t.micro_batch} ends at {t.end_s * 1e3:.3f} ms (waiting "
                                                      f"{t.waiting_s * 1e3:.3f})" for t in s.micro_batches))
    if s.meta.get("mode") == "training":
        lines.append(f"  gradient sync         {s.gradient_sync_s * 1e3:.3f} ms")
    lines += ["", "  layer  block  pass mb  time ms  " + "  ".join(f"{c:>9}" for c, _ in COLUMNS)
              + "   waiting  GPU max/mean"]
    rows = s.layers
    shown = rows if len(rows) <= max_layers else rows[: max_layers // 2] + rows[-max_layers // 2:]
    for i, r in enumerate(shown):
        if len(rows) > max_layers and i == max_layers // 2:
            lines.append(f"  ... {len(rows) - max_layers} more rows (see --json or -o DIR)")
        cols = "  ".join(f"{_col(r.stages, names) * 1e3:9.3f}" for _, names in COLUMNS)
        lines.append(f"  {r.layer:5d}  {r.block:5d}  {r.pass_[:3]:>4} {r.micro_batch:2d} {r.time_s * 1e3:8.3f}  "
                     f"{cols}  {r.waiting_s * 1e3:8.3f}  {r.gpu_load_max_over_mean:12.3f}")
    return "\n".join(lines) + "\n"


def _memory_line(mem: dict[str, Any]) -> str:
    if not mem.get("known"):
        return "not computed (the model gives no attention shape)"
    gib = 2**30
    verdict = "fits" if mem["fits"] else (f"DOES NOT FIT: over by {mem['over_by_bytes'] / gib:.1f} GiB, a what-if "
                                          "run (--allow-oversubscribe)")
    return (f"{mem['total_bytes'] / gib:.1f} of {mem['capacity_bytes'] / gib:.1f} GiB, {verdict} (experts "
            f"{mem['expert_weights_bytes'] / gib:.1f}, other weights {mem['other_weights_bytes'] / gib:.1f}, "
            f"KV cache {mem['kv_cache_bytes'] / gib:.1f})")


def write_outputs(out_dir: Path, doc: dict[str, Any], gpu_layer_tokens: Any = None) -> list[Path]:
    """Write result.json, layers.csv and gpus.csv into ``out_dir`` from a summary document (and
    gpu_layer_tokens.csv: rows = MoE layers, columns = GPUs, when given); return the paths."""
    files = {"result.json": to_json(doc), "layers.csv": to_csv(doc["layers"]), "gpus.csv": to_csv(doc["gpus"])}
    if gpu_layer_tokens is not None:
        files["gpu_layer_tokens.csv"] = "\n".join(",".join(f"{x:g}" for x in row) for row in gpu_layer_tokens) + "\n"
    for name, text in files.items():
        write_atomic(out_dir / name, text)
    return [out_dir / n for n in files]


def write_serve_outputs(out_dir: Path, result: Any) -> list[Path]:
    """serve.json (summary), requests.csv, timeline.csv and surfaces.json of a ``moesim serve`` result,
    each written atomically."""
    files = {"serve.json": to_json(result.summary), "requests.csv": columns_to_csv(result.requests),
             "timeline.csv": columns_to_csv(result.timeline),
             "surfaces.json": to_json({"/".join(k): v.to_dict() for k, v in result.surfaces.items()})}
    for name, text in files.items():
        write_atomic(out_dir / name, text)
    return [out_dir / n for n in files]
