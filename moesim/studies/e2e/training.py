"""Measured pre-training throughput (moesim.studies.e2e.megatron's rows) against moesim's training
simulation: per row the signed error of tokens per second per GPU, per group (GPU / training / precision)
and over the fit and the test rows their MAPE and bias. Rows the framework's term was fitted on
(catalog/frameworks.json ``fit_rows``, moesim.studies.e2e.training_fit) are marked ``fit``, the others ``test``.

A step with one pipeline stage is ``ga`` identical micro-batches and one gradient sync, so it is simulated as
one micro-batch (``accumulation_steps: 1``) and composed: step = ga x (iteration - sync) + sync (exact for
identical micro-batches; the uniform router makes them so). With stages, the 1F1B schedule runs all ``ga``
micro-batches (moesim.pipeline).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moesim.config.catalog import FRAMEWORKS
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.pipeline import run_pipeline
from moesim.studies.e2e import megatron
from moesim.studies.e2e.rows import summary, summary_lines


def predict(sc: dict[str, Any]) -> float:
    """Simulated tokens per second per GPU of the training scenario ``sc`` (megatron.scenario)."""
    wl = sc["workload"]
    if wl.get("pipeline_stages", 1) > 1:
        return float(run_pipeline(scenario_from_dict(sc)).doc["throughput_tokens_per_s_per_gpu"])
    ga = wl["accumulation_steps"]
    one = scenario_from_dict({**sc, "workload": {**wl, "accumulation_steps": 1}})
    doc = run_scenario(one).doc
    sync = doc["gradient_sync_s"]
    step = ga * (doc["iteration_time_s"] - sync) + sync
    return wl["tokens_per_gpu"] * ga / step


BASE = megatron.DATA.with_name("megatron-bridge-base.json")  # the base run (moesim validate training --rebase)


def fitted_rows() -> frozenset[int]:
    """The rows the shipped framework term was fitted on."""
    if not FRAMEWORKS.is_file():
        return frozenset()
    return frozenset(int(i) for i in json.loads(FRAMEWORKS.read_text(encoding="utf-8")).get("fit_rows", []))


def select(only: str | None = None) -> tuple[list[tuple[int, str, dict[str, str]]], list[dict[str, Any]]]:
    """The rows to run, (1-based number, group, row), whose group or number ``only`` names (all without it),
    and those of them that cannot be converted, each with why."""
    rows, skipped = [], []
    for i, r in enumerate(megatron.read_rows(), start=1):
        g = megatron.group(r)
        if only and not (only in g or str(i) in only.split(",")):
            continue
        why = megatron.why_not(r)
        if why:
            skipped.append({"row": i, "group": g, "why": why})
        else:
            rows.append((i, g, r))
    return rows, skipped


def compare(rows: list[tuple[int, str, dict[str, str]]], skipped: list[dict[str, Any]] = (),
            progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """The ``select``-ed rows simulated and compared: {rows: [...], skipped, groups: {name: stats},
    overall: stats}."""
    out, fitted = [], fitted_rows()
    for k, (i, g, r) in enumerate(rows):
        if progress:
            progress(k, len(rows), g)
        sc = megatron.scenario(r, i)
        pred, meas = predict(sc), megatron.measured(r)
        layout = f"pp{r['pp']} vp{r['vp']} ep{r['ep']} mbs{r['mbs']} ga{r['ga']}"
        out.append({"row": i, "group": g, "split": "fit" if i in fitted else "test", "name": sc["name"],
                    "model": r["model"],
                    "gpus": int(r["gpus"]), "layout": layout, "measured": meas, "predicted": pred,
                    "signed_error": pred / meas - 1})
    if progress:
        progress(len(rows), len(rows), "")
    return summary(out, skipped, "Megatron-Bridge docs/performance-summary.md, 25.11 NeMo container (data/SOURCES.md)")


def table(doc: dict[str, Any]) -> str:
    """The comparison as text: per row, then per group and overall."""
    lines = ["training: measured pre-training throughput through moesim (tokens/s/GPU; fit and test rows apart)",
             "", f"  {'row':>3}  {'group':22s} {'split':5s} {'model':16s} {'GPUs':>4}  {'layout':28s} "
             f"{'measured':>9} {'predicted':>9} {'error':>7}"]
    for x in doc["rows"]:
        lines.append(f"  {x['row']:>3}  {x['group']:22s} {x['split']:5s} {x['model']:16s} {x['gpus']:>4}  "
                     f"{x['layout']:28s} {x['measured']:>9.0f} {x['predicted']:>9.0f} "
                     f"{x['signed_error'] * 100:>+6.1f}%")
    return "\n".join(lines + summary_lines(doc, 34)) + "\n"


def fit_table(doc: dict[str, Any]) -> str:
    """The framework term's fit (training_fit.refit) as text: value, rows, errors, leave one system out."""
    h = doc["frameworks"]["megatron"]["layer_sync_s"]
    rows = ",".join(map(str, doc["fit_rows"]))
    lines = [f"training framework term, fitted on rows {rows} (test rows: {','.join(map(str, doc['test_rows']))})",
             "", f"  megatron  layer_sync_s  {h * 1e3:8.3f} ms  {doc['units']['layer_sync_s']}", "",
             f"  {'tokens/s/GPU (fit surrogate)':34s} {'rows':>4} {'MAPE':>7} {'bias':>7}"]
    named = [("nothing fitted (all rows)", doc["surrogate_errors"]["base"]),
             ("fit rows", doc["surrogate_errors"]["fit"]), ("test rows", doc["surrogate_errors"]["test"]),
             *[(f"{k} held out" if not k.startswith("all") else k, v)
               for k, v in doc["leave_one_system_out"].items()]]
    for name, s in named:
        lines.append(f"  {name:34s} {s['rows']:>4} {s['mape'] * 100:>6.1f}% {s['bias'] * 100:>+6.1f}%")
    return "\n".join(lines) + "\n"
