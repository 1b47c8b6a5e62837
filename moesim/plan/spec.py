"""The plan file: GPU offers, the request stream and SLOs, the throughput target and the search space.

PLAN.yaml:

    model: deepseek-v3
    gpus: {h100: {price_per_hour: 2.2}, h200: {price_per_hour: 3.2}}    # USD per GPU-hour
    gpus_per_node: 8
    serving:                                      # a serving section without deployment/scheduler
      input_tokens: {kind: constant, value: 4000}
      output_tokens: {kind: constant, value: 1000}
      slo: {ttft_s: 2.0, tpot_s: 0.05, percentile: 90}
    target: {output_tokens_per_s: 20000}
    limits: {max_gpus: 64}
    search: {nodes: [2, 4], deployment: [aggregated, disaggregated], max_batch: [32, 64, 128]}
    scenario: {router: {stats: {kind: power_law, alpha: 1.01}}, comm: {algorithm: auto}}
    seed: 7
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError

from moesim.config.loader import read_yaml
from moesim.config.types import Strict
from moesim.util.errors import ScenarioError


class _Strict(Strict):
    """The scenario's strict base: unknown keys, NaN, infinities and counts past 10^12 refused."""


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a price is a number of USD per GPU-hour, not true/false")
    return v


class Offer(_Strict):
    price_per_hour: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=1e4)]


class SearchSpec(_Strict):
    """The axes. ep_gpus ``auto``: every whole-node EP size that divides the GPUs (several EP groups run as
    data-parallel replicas). prefill_share: disaggregated, the share of nodes that prefill (at least one
    node each side). redundant_slots: expert slots per GPU beyond the fewest that fill every GPU evenly;
    the redundant-expert count is derived from it for each EP size (e.g. 256 experts on 576 GPUs: 320 for
    0 extra slots), so no GPU count is dropped for want of a listed value. max_batch: sequences per GPU,
    searched upwards until a larger batch stops raising the capacity at the SLO."""

    nodes: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(default=[1, 2, 4], min_length=1)
    deployment: list[Literal["aggregated", "disaggregated"]] = Field(default=["aggregated"], min_length=1)
    ep_gpus: list[int] | Literal["auto"] = "auto"
    prefill_share: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default=[0.25, 0.5], min_length=1)
    max_batch: list[Annotated[int, Field(ge=1)]] = Field(default=[16, 32, 64, 128, 256], min_length=1)
    micro_batches: list[Literal[1, 2]] = Field(default=[1], min_length=1)
    placement: list[str] = Field(default=["eplb"], min_length=1)
    redundant_slots: list[Annotated[int, Field(ge=0)]] = Field(default=[0, 1], min_length=1)
    node_limit: list[int | None] = Field(default=[None], min_length=1)
    attention_tp: list[int] = Field(default=[1], min_length=1)
    # MoE layout: ep (whole experts over the EP group) or tp (every expert sharded over the attention TP
    # group: workload.moe_tp = attention_tp; only with attention_tp above 1)
    moe: list[Literal["ep", "tp"]] = Field(default=["ep"], min_length=1)
    token_budget: int = Field(default=8192, ge=1)  # per GPU, without an engine (an engine brings its own)
    # engine profiles (moesim list engines) whose scheduler defaults each deployment runs; null: the
    # serving section's own scheduler (moesim's defaults, or its serving.engine)
    engine: list[str | None] = Field(default=[None], min_length=1)


class TargetSpec(_Strict):
    """Serve at least this much with the SLO met: output tokens per second, requests per second, or (closed
    loop, ``serving.load``) this many requests in flight."""

    output_tokens_per_s: float | None = Field(default=None, gt=0)
    requests_per_s: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, ge=1)


class LimitsSpec(_Strict):
    max_gpus: int | None = Field(default=None, ge=1)
    # wall hours the search may take: a wave of deployments whose surfaces would take longer (estimated,
    # moesim/plan/guard.py) is refused before it starts (exit 2 on the first; later ones end the search)
    max_hours: float = Field(default=2.0, gt=0, le=1e4)


class EffortSpec(_Strict):
    """How hard each candidate is searched. requests: per serving run (raised to cover 3x the sequences
    in flight); rate_steps: bisection steps on the request rate; cost_slack: candidates costing more than
    (1 + slack) x the cheapest found meeting the target for their GPU type are not simulated.
    surface_holdout: also run the grid's midpoints and refine (what ``moesim serve`` does; slower).
    light_requests: requests of the light-load probe (1/64 of the rate bound, or one request in flight),
    which only asks whether the SLO holds without queueing: its requests barely meet, so few tell, and at
    that load every request decodes nearly alone (a step per token: the costliest run of the search)."""

    requests: int = Field(default=600, ge=50)
    light_requests: int = Field(default=64, ge=10)
    max_requests: int = Field(default=6000, ge=50)
    rate_steps: int = Field(default=6, ge=1, le=20)
    cost_slack: float = Field(default=1.0, ge=0)
    # also hold out grid midpoints and refine the surfaces (moesim serve does; slower)
    surface_holdout: bool = False


class PlanSpec(_Strict):
    model: Any
    gpus: dict[str, Offer] = Field(min_length=1)
    gpus_per_node: int = Field(default=8, ge=1)
    serving: dict[str, Any] = {}
    target: TargetSpec = TargetSpec()
    limits: LimitsSpec = LimitsSpec()
    search: SearchSpec = SearchSpec()
    effort: EffortSpec = EffortSpec()
    scenario: dict[str, Any] = {}
    seed: int = Field(default=0, ge=0)


OLD_KEYS = {"workload", "vary"}


def load_plan(path: str | Path) -> tuple[PlanSpec, Path]:
    """Read and validate a plan file; one ScenarioError naming the file, the key and the fix."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ScenarioError("a plan must be a mapping", file=str(path), fix="see `moesim plan --help`")
    old = sorted(OLD_KEYS & set(raw))
    if old:
        raise ScenarioError(f"{', '.join(old)}: plans now search serving deployments", file=str(path),
                            path=old[0], fix="describe the request stream under serving: and the axes under "
                                             "search: (see `moesim plan --help`)")
    for key in ("deployment", "scheduler"):
        if isinstance(raw.get("serving"), dict) and key in raw["serving"]:
            raise ScenarioError("is searched by the planner", file=str(path), path=f"serving.{key}",
                                fix="remove it; list the shapes under search:")
    try:
        spec = PlanSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        fix = _allowed(err["loc"]) if err["type"] == "extra_forbidden" else "see `moesim plan --help`"
        raise ScenarioError(msg if err["type"] != "extra_forbidden" else "unknown key", file=str(path),
                            path=loc, fix=fix) from None
    _check_engines(spec, path)
    _check_scenario(spec, path)
    return spec, path


def _check_scenario(spec: PlanSpec, path: Path) -> None:
    """The plan's ``scenario:`` sections are the scenario's: a section the schema takes as a mapping must be
    one (``router: fast`` or ``cluster: [1]`` is the plan file's mistake, named before any work)."""
    from pydantic import BaseModel

    from moesim.config.schema import Scenario
    for key, value in spec.scenario.items():
        field = Scenario.model_fields.get(key)
        if field is None:
            import difflib
            close = difflib.get_close_matches(key, list(Scenario.model_fields), n=1)
            raise ScenarioError("unknown scenario section", file=str(path), path=f"scenario.{key}",
                                fix=(f"did you mean {close[0]!r}? " if close else "") + "allowed: "
                                + ", ".join(Scenario.model_fields))
        kinds = getattr(field.annotation, "__args__", (field.annotation,))
        section = any(isinstance(k, type) and issubclass(k, BaseModel) for k in kinds)
        if section and not isinstance(value, dict):
            raise ScenarioError(f"must be a mapping, not {type(value).__name__} {value!r}"[:160], file=str(path),
                                path=f"scenario.{key}", fix=f"give {key}'s fields, e.g. scenario: {{{key}: {{...}}}}")


def _allowed(loc: tuple) -> str:
    """For an unknown key at ``loc``: "did you mean ...? allowed keys: ..." of the section it is in."""
    import difflib
    model: Any = PlanSpec
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(str(part))
        model = field.annotation if field is not None else None
    names = list(getattr(model, "model_fields", {}))
    if not names:
        return "see `moesim plan --help`"
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + "allowed keys: " + ", ".join(names)


def _check_engines(spec: PlanSpec, path: Path) -> None:
    """search.engine: registered names; not beside serving.engine (one of them picks the scheduler)."""
    from moesim.serve.engines import ENGINES
    bad = [e for e in spec.search.engine if e is not None and e not in ENGINES]
    if bad:
        raise ScenarioError(ENGINES.unknown(bad[0]), file=str(path), path="search.engine",
                            fix="`moesim list engines` lists them")
    if spec.search.engine != [None] and spec.serving.get("engine") is not None:
        raise ScenarioError("is searched by the planner", file=str(path), path="serving.engine",
                            fix="remove it, or remove search.engine")
