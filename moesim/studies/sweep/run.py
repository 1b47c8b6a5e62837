"""Run a sweep: resolve every point, reuse cached results, run the rest on an executor, write rows.

Layout of the output folder: ``points/<hash>.json`` (one per point, written atomically as it finishes;
the hash is of the resolved scenario and the moesim version, so an edited base scenario or a new moesim
reruns), ``results.jsonl`` and ``results.csv`` (one row per point: parameters, then metrics or error),
rewritten atomically at most every ``TABLE_EVERY_S`` seconds while points finish, and at the end or on
an interrupt (each point's own file is written the moment it finishes, so even a killed sweep loses no
finished point: the next run reads them back and rewrites the tables).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moesim.exec.local import Executor
from moesim.studies.objective import Prices, best
from moesim.studies.sweep.bundle import referenced_files
from moesim.studies.sweep.spec import SweepSpec
from moesim.util.errors import MoesimError
from moesim.util.files import to_csv, write_atomic
from moesim.util.fingerprint import code_fingerprint

TABLE_EVERY_S = 2.0
METRICS = ("iteration_time_s", "throughput_tokens_per_s", "tokens_per_s_per_gpu", "tokens_per_iteration")
TOTALS = ("gpu_load_max_over_mean", "mean_layer_gpu_load_max_over_mean", "inter_node_bytes", "intra_node_bytes",
          "dropped_tokens", "waiting_s")
STAGES = ("dispatch", "routed_experts", "combine", "attention_core")  # critical-path seconds, column <name>_s
METRIC_KEYS = {*METRICS, *TOTALS, *(f"{n}_s" for n in STAGES), "throughput_scope", "error", "bubble_fraction",
               "pipeline_stages", "gpu", "gpus"}


def point_key(scenario_json: str) -> str:
    """A point's cache key: its resolved scenario and the code and data that time it (``code_fingerprint``)."""
    return hashlib.sha256(f"{code_fingerprint()}\n{scenario_json}".encode()).hexdigest()[:20]


def _resolve(spec: SweepSpec, params: dict[str, Any]) -> tuple[Any, str | None, str | None]:
    """(resolved scenario, its JSON, error) for one point; a point that does not validate keeps its error."""
    from moesim.iteration.fit import check_fit
    from moesim.iteration.scenario import load_scenario
    try:
        s = load_scenario(spec.base, [*spec.overrides, *spec.overrides_for(params)])
        check_fit(s)  # a point that does not fit in GPU memory is recorded with why
    except MoesimError as exc:
        return None, None, str(exc)
    return s, json.dumps(s.model_dump(mode="json"), sort_keys=True), None


def simulate_point(task: tuple[Any, str, dict[str, bytes]]) -> dict[str, Any]:
    """Worker: simulate one point (resolved scenario, key, bundled files: see ``bundle``) and return its
    metrics or its error."""
    from moesim.iteration.invariants import InvariantError
    from moesim.iteration.run import run_scenario
    from moesim.studies.sweep.bundle import materialize
    scenario, _key, files = task
    try:
        if scenario.workload.pipeline_stages > 1:  # a pipelined step: the schedule's figures
            return _pipeline_point(materialize(scenario, files) if files else scenario)
        s = run_scenario(materialize(scenario, files) if files else scenario).summary
    except MoesimError as exc:
        return {"error": str(exc)}
    except InvariantError:  # moesim broke its own invariants: a bug, not this point's; the sweep stops (exit 3)
        raise
    except Exception as exc:  # a crashing point is recorded, the sweep goes on
        return {"error": f"{type(exc).__name__}: {exc}"}
    t = s.totals
    return {"iteration_time_s": s.iteration_time_s, "throughput_tokens_per_s": s.throughput_tokens_per_s,
            "tokens_per_s_per_gpu": s.tokens_per_s_per_gpu, "tokens_per_iteration": s.tokens_per_iteration,
            "throughput_scope": s.scope, "gpu_load_max_over_mean": t.gpu_load_max_over_mean,
            "mean_layer_gpu_load_max_over_mean": t.mean_layer_gpu_load_max_over_mean,
            "inter_node_bytes": t.inter_node_bytes, "intra_node_bytes": t.intra_node_bytes,
            "dropped_tokens": t.dropped_tokens, "waiting_s": t.waiting_s,
            **{f"{n}_s": t.stages.get(n, 0.0) for n in STAGES}}


def _pipeline_point(scenario: Any) -> dict[str, Any]:
    """A pipelined point's metrics: the step, throughput, the bubble and the stage run's stage times."""
    from moesim.pipeline import run_pipeline
    doc = run_pipeline(scenario).doc
    st = doc["stage_iteration"]["stages"]
    return {"iteration_time_s": doc["time_s"], "throughput_tokens_per_s": doc["throughput_tokens_per_s"],
            "tokens_per_s_per_gpu": doc["throughput_tokens_per_s_per_gpu"],
            "tokens_per_iteration": doc["tokens_per_iteration"], "throughput_scope": doc["scope"],
            "bubble_fraction": doc["pipeline"]["bubble_fraction"], "pipeline_stages": doc["pipeline"]["stages"],
            **{f"{n}_s": st.get(n, 0.0) for n in STAGES}}


def run_sweep(spec: SweepSpec, out: Path, executor: Executor,
              progress: Callable[[int, int, int], None] | None = None, objective: str = "throughput-per-gpu",
              prices: Prices = None) -> dict[str, Any]:
    """Run every point not cached in ``out``; returns a summary (counts, the best point by ``objective``:
    see ``moesim.studies.objective``). ``progress(done,
    to run, cached)`` is called once before any point runs and after each one. Ctrl-C propagates after
    every finished point is on disk (rows are written as each finishes)."""
    points_dir = out / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, spec):
        return _run(spec, out, points_dir, executor, progress, objective, prices)


def _run(spec: SweepSpec, out: Path, points_dir: Path, executor: Executor,
         progress: Callable[[int, int, int], None] | None, objective: str, prices: Prices) -> dict[str, Any]:
    rows: dict[int, dict[str, Any]] = {}
    todo, cached, invalid = [], 0, 0
    points = spec.points()
    scenarios: dict[str, Any] = {}
    for i, params in enumerate(points):
        scenario, scenario_json, error = _resolve(spec, params)
        if error:
            rows[i] = {**params, "error": error}
            invalid += 1
            continue
        key = point_key(scenario_json)
        result = cached_result(points_dir / f"{key}.json")
        if result is not None:
            rows[i] = {**params, **result, **_where(scenario), "key": key}
            cached += 1
            continue
        todo.append((i, key, params))
        scenarios[key] = scenario
    done = 0
    tasks = {key: (i, params) for i, key, params in todo}
    bundle = getattr(executor, "self_contained", False)  # workers elsewhere get the files' bytes too
    work = [(scenarios[key], key, referenced_files(scenarios[key]) if bundle else {}) for _, key, _ in todo]
    _write(out, points, rows)
    if progress:
        progress(0, len(work), cached)
    last = time.monotonic()
    try:
        for task, result in executor.run(simulate_point, work):
            i, params = tasks[task[1]]
            rows[i] = {**params, **result, **_where(scenarios[task[1]]), "key": task[1]}
            if "error" not in result:  # failures are recorded in the table but retried next time
                write_atomic(points_dir / f"{task[1]}.json", json.dumps({"params": params, "result": result}) + "\n")
            done += 1
            if time.monotonic() - last >= TABLE_EVERY_S:  # a 1,000-point sweep rewrote 1,000-row tables 1,000 times
                _write(out, points, rows)
                last = time.monotonic()
            if progress:
                progress(done, len(work), cached)
    finally:
        _write(out, points, rows)
    table = [rows[i] for i in sorted(rows)]
    at = best(table, objective, prices)
    return {"points": len(points), "ran": len(work), "cached": cached, "invalid": invalid,
            "failed": sum(1 for r in rows.values() if "error" in r), "objective": objective, "prices": prices,
            "best": None if at is None else table[at]}


def _where(scenario: Any) -> dict[str, Any]:
    """The row's GPU (name) and GPU count: what per-GPU and per-dollar objectives divide by."""
    return {"gpu": scenario.cluster.gpu.name, "gpus": scenario.cluster.num_gpus}


def cached_result(path: Path) -> dict[str, Any] | None:
    """A finished point's metrics, or None (run it again) when the file is missing, unreadable, or holds
    numbers no run produces (non-finite, non-positive time or throughput): a corrupt cache costs a rerun,
    never a crash or a wrong row."""
    import math
    try:
        result = json.loads(path.read_text(encoding="utf-8"))["result"]
        time_s, tput = float(result["iteration_time_s"]), float(result["throughput_tokens_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    numbers = [v for v in result.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    if not (time_s > 0 and tput > 0) or not all(math.isfinite(v) and v >= 0 for v in numbers):
        return None
    tokens = result.get("tokens_per_iteration")  # throughput x time = tokens: an edited figure breaks it
    if isinstance(tokens, int | float) and abs(tput * time_s - tokens) > 1e-6 * max(tokens, 1.0):
        return None
    return result


@contextlib.contextmanager
def folder_lock(out: Path, spec: SweepSpec) -> Iterator[None]:
    """Hold the results folder for this sweep: a second sweep into it while this one runs is refused (a
    lock), and so is a different sweep file into a folder that holds another's results."""
    import fcntl
    import os

    from moesim.util.errors import ScenarioError
    owner = out / "sweep.json"
    me = {"sweep_file": str(spec.file.resolve())}
    if owner.is_file():
        try:
            other = json.loads(owner.read_text(encoding="utf-8")).get("sweep_file")
        except (OSError, ValueError, AttributeError):
            other = None
        if other and other != me["sweep_file"]:
            raise ScenarioError(f"holds the results of another sweep ({other})", file=str(out),
                                fix="give this sweep its own -o folder")
    with (out / ".lock").open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ScenarioError("another sweep is writing this folder now", file=str(out),
                                fix="wait for it, or give this one another -o folder") from None
        try:
            write_atomic(owner, json.dumps({**me, "pid": os.getpid()}) + "\n")
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(out: Path, points: list[dict[str, Any]], rows: dict[int, dict[str, Any]]) -> None:
    ordered = [rows[i] for i in sorted(rows)]
    cols: list[str] = []
    for r in ordered:
        cols += [k for k in r if k not in cols]
    full = [{c: r.get(c) for c in cols} for r in ordered]
    write_atomic(out / "results.jsonl", "".join(json.dumps(r, sort_keys=False) + "\n" for r in ordered))
    write_atomic(out / "results.csv", to_csv(full))
