"""The Python API: load → build → programs → simulate → summarise. Notebook-friendly; no click needed.

>>> from moesim import api
>>> result = api.run("scenarios/deepseek-v3-prefill-h800.yaml", overrides=["cluster.nodes=8"])
>>> result.summary.iteration_time_s, result.doc["totals"]["stages"]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moesim.util.errors import MoesimError, ScenarioError

if TYPE_CHECKING:
    from moesim.config.schema import Scenario
    from moesim.iteration.build import Built, RouteReuse
    from moesim.iteration.run import Result, build_micro_batches, programs_of, run_scenario
    from moesim.iteration.scenario import scenario_from_dict

# Re-exported names, imported on first use (PEP 562): ``import moesim.api`` (and so ``moesim --help``) loads
# none of the simulator; ``from moesim.api import Result`` loads what Result needs.
_LAZY = {"Scenario": "moesim.config.schema", "Built": "moesim.iteration.build",
         "RouteReuse": "moesim.iteration.build", "Result": "moesim.iteration.run",
         "build_micro_batches": "moesim.iteration.run", "programs_of": "moesim.iteration.run",
         "run_scenario": "moesim.iteration.run", "scenario_from_dict": "moesim.iteration.scenario"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'moesim.api' has no attribute {name!r}")


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Any:
    """The scenario file at ``path`` (with ``a.b=value`` overrides), validated: a ``Scenario``."""
    from moesim.iteration.scenario import load_scenario as load
    return load(path, overrides)


__all__ = ["Built", "Result", "RouteReuse", "Scenario", "build_micro_batches", "check", "launch", "load_scenario",
           "plan", "programs_of", "registry", "report", "run", "run_scenario", "scenario_from_dict", "serve", "sweep",
           "validate"]


def run(path: str | Path, overrides: Iterable[str] = (), reuse: RouteReuse | None = None) -> Any:
    """Load the scenario file at ``path`` (with ``a.b=value`` overrides) and simulate it: a ``Result``, or
    for a scenario with an ``offload`` section a ``moesim.offload.OffloadResult``."""
    from moesim.studies.single import run_file
    return run_file(path, overrides, reuse)


def sweep(path: str | Path, out_dir: str | Path, jobs: int = 1, executor: str = "local",
          address: str | None = None) -> list[dict[str, Any]]:
    """Run a sweep file as ``moesim sweep`` does (cached points are not run again) and return its rows:
    one flat dict per point (the swept parameters, then the metrics or ``error``); ``.to_frame()`` gives
    them as a pandas DataFrame."""
    import json

    from moesim.exec import make_executor
    from moesim.studies.sweep import load_sweep, run_sweep
    out = Path(out_dir)
    run_sweep(load_sweep(Path(path)), out, make_executor(executor, jobs, address))
    from moesim.util.frames import Rows
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return Rows(json.loads(x) for x in lines if x.strip())


def plan(path: str | Path, jobs: int = 1, executor: str = "local", address: str | None = None,
         use_cache: bool = True) -> dict[str, Any]:
    """Run a plan file as ``moesim plan`` does and return its document: ``rows`` (one flat dict per
    deployment and batch limit, for ``pandas.DataFrame(doc["rows"])``), ``best``, ``best_per_gpu``,
    ``frontier`` and the counts."""
    from moesim.exec import make_executor
    from moesim.plan import load_plan
    from moesim.plan import plan as run_plan
    from moesim.util.files import write_atomic
    spec, where = load_plan(path)
    return run_plan(spec, where.parent, make_executor(executor, jobs, address), None, use_cache, write_atomic)


def report(results: str | Path | Iterable[str | Path], out_dir: str | Path, title: str | None = None) -> list[Path]:
    """Write the report page(s) of one results folder, or of several compared on one page, as
    ``moesim report`` does; returns the paths written (index.html, README.md)."""
    from moesim.present.report import write_report
    paths = [Path(results)] if isinstance(results, str | Path) else [Path(p) for p in results]
    return write_report(paths, Path(out_dir), title)


def validate(profile: str, stored: bool = True) -> dict[str, Any]:
    """``moesim validate``'s document for ``profile`` (a catalogue name or a profile JSON): predictions against
    the stored held-out measurements, DeepEP's and DeepSeek's published figures. ``stored=False`` measures the
    held-out cases again first (``moesim.calibrate.validate``; needs torch)."""
    from moesim.studies.validation import validation_report
    return validation_report(profile, None if stored else _measure_live)


def _measure_live(path: Path) -> None:
    try:
        from moesim.calibrate.validate import main as live  # torch: only when asked
    except ImportError as exc:
        raise MoesimError(f"--live needs torch ({exc}); run `pip install -e '.[calibrate]'` in a moesim checkout") \
            from None
    live(["--profile", str(path)])


def serve(path: str | Path, overrides: Iterable[str] = (), rate: float | None = None, jobs: int = 0,
          use_cache: bool = True, concurrency: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> Any:
    """Serve the scenario file at ``path`` as ``moesim serve`` does: ``rate`` (requests/s) overrides
    ``serving.arrival.rate_per_s``, ``concurrency`` sets a closed loop (``serving.load.concurrency``; not with
    ``rate``); a scenario without a serving section gets its defaults; the iteration
    surface runs on ``jobs`` local processes (0: one per core), cached unless ``use_cache`` is False.
    Returns the ``moesim.serve`` result (``summary``, ``requests``, ``timeline``, ``surfaces``)."""
    from moesim.config.serving import ServingSpec
    from moesim.exec import make_executor
    from moesim.serve import serve as run_serve
    from moesim.util.files import write_atomic
    sets = list(overrides)
    if rate is not None:
        if rate <= 0:
            raise ScenarioError(f"the request rate must be positive (got {rate:g})", path="--rate",
                                fix="give requests per second above 0, e.g. --rate 4")
        sets.append(f"serving.arrival.rate_per_s={rate}")
    if concurrency is not None:
        if rate is not None or concurrency < 1:
            problem = ("--rate (open loop) and --concurrency (closed loop) both given" if rate is not None
                       else f"{concurrency} requests in flight")
            raise ScenarioError(problem, path="--concurrency", fix="give --rate R or --concurrency N (N >= 1)")
        sets.append(f"serving.load.concurrency={concurrency}")
    s = load_scenario(path, sets)
    if s.serving is None:
        s = s.model_copy(update={"serving": ServingSpec()})
    try:
        return run_serve(s, make_executor("local", jobs), use_cache, progress, write_atomic)
    except ScenarioError as err:  # the deployment, the stream, a trace: all the scenario file's
        raise err.located(file=err.file or str(path)) from None


def launch(path: str | Path, engine: str, overrides: Iterable[str] = ()) -> Any:
    """The engine launch of the scenario file at ``path`` (``moesim export-launch``): a ``moesim.launch.Launch``
    with ``commands`` (argv per role and node), ``files`` (name → text), ``notes``, ``doc()`` and ``script()``."""
    from moesim.launch import render
    s = load_scenario(path, overrides)
    try:
        return render(s, engine)
    except ScenarioError as err:
        raise err.located(file=str(path)) from None


def check(path: str | Path, overrides: Iterable[str] = ()) -> tuple[dict[str, Any], str]:
    """``moesim check``: the scenario file at ``path`` loaded and checked without simulating (its serving
    deployment too); returns the resolved scenario as plain data and the size estimate (or the tier plan)."""
    from moesim.iteration.fit import check_fit
    from moesim.iteration.sizing import describe
    from moesim.present.offload_text import describe_plan
    from moesim.serve.deploy import deployment_of
    s = load_scenario(path, overrides)
    try:
        if s.serving is not None:
            deployment_of(s)
        else:  # a serving deployment sizes its KV cache itself; one iteration must fit as given
            check_fit(s)
        text = describe_plan(s) if s.offload is not None else describe(s)  # a plan that does not fit: refused
    except ScenarioError as err:
        raise err.located(file=str(path)) from None
    return s.model_dump(mode="json", exclude={"cluster": {"gpu_provenance", "host_provenance"}}), text


# ``moesim list NAME``: the extension points whose registries the CLI lists
REGISTRIES = ("placements", "algorithms", "routing-rules", "layer-kinds", "schedulers", "engines", "cost-models",
              "executors", "launchers")


def registry(name: str) -> Any:
    """The registry ``moesim list NAME`` shows (one of ``REGISTRIES``): names with a one-line description."""
    from moesim.comm import ALGORITHMS  # each owning package loads on demand
    from moesim.exec import EXECUTORS
    from moesim.hw.costs.loader import COST_MODELS
    from moesim.launch import LAUNCHERS
    from moesim.model.layers import LAYER_KINDS
    from moesim.placement import PLACEMENTS
    from moesim.routing.rules import RULES
    from moesim.serve.engines import ENGINES
    from moesim.serve.policies import SCHEDULERS
    regs = (PLACEMENTS, ALGORITHMS, RULES, LAYER_KINDS, SCHEDULERS, ENGINES, COST_MODELS, EXECUTORS, LAUNCHERS)
    return dict(zip(REGISTRIES, regs, strict=True))[name]
