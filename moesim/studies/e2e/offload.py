"""Published local offloaded inference (moesim.studies.e2e.ktransformers's rows) against moesim's offload
simulation: per row the signed error of tokens/s (prefill: prompt tokens per second; decode: generated tokens
per second of the one sequence), per group (engine-version / GPU / sockets / mode) and over the fit and the
test rows their MAPE and bias. Rows the engine's terms were fitted on (catalog/offload_engines.json
``fit_rows``, moesim.studies.e2e.offload_fit) are marked ``fit``, the others ``test``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moesim.config.catalog import OFFLOAD_ENGINES
from moesim.iteration.scenario import scenario_from_dict
from moesim.offload.run import run_offload
from moesim.offload.tiers import MissCosts
from moesim.studies.e2e import ktransformers
from moesim.studies.e2e.offload_fit import TERMS
from moesim.studies.e2e.rows import summary, summary_lines
from moesim.util.text import ranges

BASE = ktransformers.DATA.with_name("ktransformers-dsv3-base.json")  # moesim validate offload --rebase


def seconds(sc: dict[str, Any]) -> float:
    """Simulated seconds per token of the offload scenario ``sc``: per prompt token (prefill) or per generated
    token of one sequence (decode)."""
    return simulate(sc)[0]


def simulate(sc: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``seconds`` and what the fit's surrogate needs of the run (one GPU): its CPU expert calls counted by
    tokens, per token, and one call's stream (m), per-token compute (f) and overhead (o) at full rates, s."""
    s = scenario_from_dict(sc)
    res = run_offload(s)
    doc = res.summary
    per = doc["simulated_s"] / doc["time_per_token_s"]  # decode steps, or prompt tokens
    calls: dict[int, float] = {}
    for row in res.accesses:
        for la in row:
            for n in la.cpu_tokens[0]:
                calls[int(n)] = calls.get(int(n), 0.0) + 1.0 / per
    h = s.cluster.host
    flops = MissCosts(s, res.plan.expert_bytes).expert_flops_per_token
    return float(doc["time_per_token_s"]), {"calls": calls, "m": res.plan.expert_bytes / h.dram_bandwidth,
                                            "f": flops / h.cpu_flops, "o": h.cpu_expert_overhead}


def fitted() -> dict[str, Any]:
    """The shipped fit document ({} before the first fit)."""
    if not OFFLOAD_ENGINES.is_file():
        return {}
    return json.loads(OFFLOAD_ENGINES.read_text(encoding="utf-8"))


def compare(rows: list[tuple[int, str, dict[str, str]]], skipped: list[dict[str, Any]] = (),
            progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """The ``select``-ed rows simulated with the engine's fitted terms and compared: {rows: [...], skipped,
    groups: {name: stats}, splits, overall}."""
    out, fit_rows = [], frozenset(fitted().get("fit_rows", []))
    for k, (i, g, r) in enumerate(rows):
        if progress:
            progress(k, len(rows), g)
        pred, meas = 1.0 / seconds(ktransformers.scenario(r, i)), ktransformers.measured(r)
        out.append({"row": i, "group": g, "split": "fit" if i in fit_rows else "test",
                    "experts_per_token": int(r["experts_per_token"]), "prompt_tokens": int(r["prompt_tokens"]),
                    "measured": meas, "predicted": pred, "signed_error": pred / meas - 1})
    if progress:
        progress(len(rows), len(rows), "")
    return summary(out, skipped, "kvcache-ai/ktransformers doc/en/DeepseekR1_V3_tutorial.md (data/SOURCES.md)")


def table(doc: dict[str, Any]) -> str:
    """The comparison as text: per row, then per group and overall."""
    lines = ["offload: published local inference through moesim (tokens/s; fit and test rows apart)", "",
             f"  {'row':>3}  {'group':40s} {'split':5s} {'k':>2} {'prompt':>6} {'measured':>9} {'predicted':>9} "
             f"{'error':>7}"]
    for x in doc["rows"]:
        lines.append(f"  {x['row']:>3}  {x['group']:40s} {x['split']:5s} {x['experts_per_token']:>2} "
                     f"{x['prompt_tokens']:>6} {x['measured']:>9.2f} {x['predicted']:>9.2f} "
                     f"{x['signed_error'] * 100:>+6.1f}%")
    return "\n".join(lines + summary_lines(doc, 40)) + "\n"


def fit_table(doc: dict[str, Any]) -> str:
    """The engine terms' fit (offload_fit.refit) as text: values, rows, errors, leave one group out."""
    x = doc["engines"]["ktransformers"]
    lines = [f"offload engine terms, fitted on rows {ranges(doc['fit_rows'])} "
             f"(test rows: {ranges(doc['test_rows'])})", ""]
    for k in TERMS:
        val = f"{x[k] * 1e3:8.3f} ms" if k.endswith("_s") else f"{x[k]:8.3f}   "
        lines.append(f"  ktransformers  {k:22s} {val}  {doc['units'][k]}")
    form = "roofline: the longer of stream and compute" if x["cpu_overlap"] else "sum: stream, then compute"
    lines.append(f"  ktransformers  {'cpu_overlap':22s} {str(x['cpu_overlap']):>8}     a CPU call's form ({form})")
    lines += ["", f"  {'both forms fitted (surrogate)':50s} {'mem':>5} {'gemm':>5} {'sync ms':>7} "
                  f"{'fit':>7} {'test':>7}"]
    for name, f in doc.get("forms", {}).items():
        lines.append(f"  {name:50s} {f['cpu_memory_efficiency']:5.3f} {f['cpu_gemm_efficiency']:5.3f} "
                     f"{f['layer_sync_s'] * 1e3:7.3f} {f['fit']['mape'] * 100:6.1f}% {f['test']['mape'] * 100:6.1f}%")
    lines += ["", f"  {'tokens/s (fit surrogate)':50s} {'rows':>4} {'MAPE':>7} {'bias':>7}"]
    se = doc["surrogate_errors"]
    named = [("host estimates, no hand-off (all rows)", se["host estimates"]), ("fit rows", se["fit"]),
             ("test rows", se["test"]),
             *[(f"{k} held out" if not k.startswith("all") else k, v) for k, v in doc["leave_one_group_out"].items()]]
    for name, s in named:
        lines.append(f"  {name:50s} {s['rows']:>4} {s['mape'] * 100:>6.1f}% {s['bias'] * 100:>+6.1f}%")
    return "\n".join(lines) + "\n"
