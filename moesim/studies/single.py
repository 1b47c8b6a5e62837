"""One scenario file run as ``moesim run`` runs it: one iteration, or for a scenario with an ``offload``
section the walk over decode steps (``moesim.offload``). Compare and the façade both start here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moesim.iteration.build import RouteReuse
from moesim.iteration.checks import check_slots, serving_instances_split
from moesim.iteration.fit import check_fit
from moesim.iteration.run import run_scenario
from moesim.iteration.scenario import load_scenario
from moesim.iteration.sizing import guard
from moesim.offload import run_offload
from moesim.pipeline import run_pipeline
from moesim.util.errors import ScenarioError


def run_file(path: str | Path, overrides: Iterable[str] = (), reuse: RouteReuse | None = None) -> Any:
    """Load the scenario file at ``path`` (with ``a.b=value`` overrides) and simulate it: an
    ``iteration.run.Result``, for a scenario with an ``offload`` section an ``offload.OffloadResult``, for one
    with ``workload.pipeline_stages`` > 1 a ``pipeline.PipelineResult``."""
    s = load_scenario(path, overrides)
    try:
        check_fit(s)  # a deployment that does not fit in GPU memory: refused (unless allowed as a what-if)
        if s.offload is not None:  # experts across memory tiers: its own walk over decode steps
            return run_offload(s)
        if s.workload.pipeline_stages > 1:  # stage by stage, then the pipeline schedule
            return run_pipeline(s)
        if serving_instances_split(s):  # one iteration of the whole cluster, not of its serving instances
            check_slots(s)
        guard(s)
    except ScenarioError as err:
        raise err.located(file=str(path)) from None
    return run_scenario(s, reuse=reuse)
