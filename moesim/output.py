"""Outputs: a readable table, JSON, per-GPU and per-layer CSVs, and a Chrome trace (Perfetto).

Files are written atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from moesim.engine.records import SimRecords

# the span between consecutive columns of SimRecords.times (records.STAGES)
TRACE_STAGES = ("route", "dispatch", "experts", "combine", "unpermute")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared
    os.replace(tmp, path)


def to_json(summary: dict[str, Any]) -> str:
    """Stable JSON (sorted keys) so the same seed gives byte-identical output."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def chrome_trace(records: SimRecords, gpus_per_node: int) -> str:
    """Chrome trace-event JSON: one complete ("X") event per GPU, layer and stage; pid = node, tid = GPU."""
    t = records.times * 1e6  # microseconds
    events: list[dict[str, Any]] = []
    for layer in range(t.shape[0]):
        for gpu in range(t.shape[1]):
            for i, name in enumerate(TRACE_STAGES):
                start, end = t[layer, gpu, i], t[layer, gpu, i + 1]
                events.append({"name": name, "cat": f"layer{layer}", "ph": "X", "ts": round(start, 4),
                               "dur": round(end - start, 4), "pid": gpu // gpus_per_node, "tid": gpu,
                               "args": {"layer": layer}})
    meta = [{"name": "process_name", "ph": "M", "pid": n, "args": {"name": f"node {n}"}}
            for n in range(t.shape[1] // gpus_per_node)]
    return json.dumps({"traceEvents": meta + events, "displayTimeUnit": "ms"}) + "\n"


def _fmt_bytes(x: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(x) < 1000 or unit == "TB":
            return f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} TB"


def table(summary: dict[str, Any], max_layers: int = 12) -> str:
    """The human-readable summary printed by ``moesim run``."""
    s, tot = summary, summary["totals"]
    it = s["iteration_time_s"]
    lines = [
        f"{s['scenario']}: {s['model']} on {s['nodes']}x{s['gpus_per_node']} {s['gpu']}, {s['mode']}, "
        f"{s['tokens_per_gpu']} tokens/GPU, {s['moe_layers']} MoE layers",
        (f"  MoE-layer throughput  {s['throughput_tokens_per_s']:,.0f} tokens/s   (MoE layers only; attention and "
         f"dense parts not simulated)" if s.get("throughput_scope") != "whole_model" else
         f"  model throughput      {s['throughput_tokens_per_s']:,.0f} tokens/s   (whole model: attention, dense "
         f"blocks and head from the roofline, counted in route)"),
        f"  iteration time        {it * 1e3:.3f} ms",
        f"  GPU load max/mean     {tot['mean_layer_gpu_load_max_over_mean']:.3f} (mean over layers)",
        f"  bytes                 {_fmt_bytes(tot['intra_node_bytes'])} inside nodes, "
        f"{_fmt_bytes(tot['inter_node_bytes'])} between nodes",
        f"  dropped tokens        {tot['dropped_tokens']:,.0f}",
        f"  memory per GPU        {_memory_line(summary.get('memory_per_gpu', {}))}",
        f"  fidelity              network {s['fidelity']['network']}, routing {s['fidelity']['routing']}",
        "",
        "  where the time goes (critical GPU of each layer, summed):",
    ]
    for key in ("route_s", "dispatch_s", "expert_s", "combine_s", "waiting_s"):
        share = tot[key] / it * 100 if it else 0.0
        lines.append(f"    {key[:-2]:<9} {tot[key] * 1e3:10.3f} ms  {share:5.1f}%")
    lines += ["", "  layer  block   time ms  dispatch  experts  combine  waiting  GPU max/mean  expert max/mean"]
    rows = s["layers"]
    shown = rows if len(rows) <= max_layers else rows[: max_layers // 2] + rows[-max_layers // 2:]
    for i, r in enumerate(shown):
        if len(rows) > max_layers and i == max_layers // 2:
            lines.append(f"  ... {len(rows) - max_layers} more layers (see --json or -o DIR)")
        lines.append(f"  {r['layer']:5d}  {r['block']:5d}  {r['time_s'] * 1e3:8.3f}  {r['dispatch_s'] * 1e3:8.3f}"
                     f"  {r['expert_s'] * 1e3:7.3f}  {r['combine_s'] * 1e3:7.3f}  {r['waiting_s'] * 1e3:7.3f}"
                     f"  {r['gpu_load_max_over_mean']:12.3f}  {r['expert_load_max_over_mean']:15.3f}")
    return "\n".join(lines) + "\n"


def _memory_line(mem: dict[str, Any]) -> str:
    if not mem.get("known"):
        return "not computed (the model gives no attention shape)"
    gib = 2**30
    verdict = "fits" if mem["fits"] else f"DOES NOT FIT: over by {mem['over_by_bytes'] / gib:.1f} GiB"
    return (f"{mem['total_bytes'] / gib:.1f} of {mem['capacity_bytes'] / gib:.1f} GiB, {verdict} (experts "
            f"{mem['expert_weights_bytes'] / gib:.1f}, other weights {mem['other_weights_bytes'] / gib:.1f}, "
            f"KV cache {mem['kv_cache_bytes'] / gib:.1f})")


def write_outputs(out_dir: Path, summary: dict[str, Any], gpu_layer_tokens: Any = None) -> list[Path]:
    """Write result.json, layers.csv and gpus.csv into ``out_dir`` (and gpu_layer_tokens.csv: rows = MoE
    layers, columns = GPUs, when given); return the paths."""
    files = {"result.json": to_json(summary), "layers.csv": to_csv(summary["layers"]),
             "gpus.csv": to_csv(summary["gpus"])}
    if gpu_layer_tokens is not None:
        files["gpu_layer_tokens.csv"] = "\n".join(",".join(f"{x:g}" for x in row) for row in gpu_layer_tokens) + "\n"
    for name, text in files.items():
        write_atomic(out_dir / name, text)
    return [out_dir / n for n in files]
