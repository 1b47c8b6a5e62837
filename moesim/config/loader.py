"""Load a scenario: YAML → resolve catalogue names and files → apply overrides → validate → check.

Every user mistake becomes one :class:`ScenarioError` naming the file, the dotted field path and the fix.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from moesim.config import catalog
from moesim.config.hf import from_hf_config, normalise_keys
from moesim.config.offload import ENGINE_RUNTIME_TERMS
from moesim.config.schema import Scenario
from moesim.util import safeio
from moesim.util.errors import ScenarioError


def read_yaml(path: Path) -> Any:
    """A YAML file's contents as plain data (``moesim.util.safeio``: regular files, UTF-8, JSON types, aliases
    bounded); anything else is one ScenarioError naming the file (and line)."""
    return safeio.load_yaml(Path(path), what="YAML file")


def read_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Read, override, resolve and validate the scenario file at ``path`` against the schema (field by field;
    the cross-field checks against the model and the registries are ``moesim.iteration.scenario``'s)."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        raw = apply_overrides(raw, overrides)
        return parse_scenario(raw, base_dir=path.parent)
    except ScenarioError as err:
        raise err.located(file=str(path)) from None


def apply_overrides(raw: Any, overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values read as YAML) to a copy of ``raw``."""
    out = json.loads(json.dumps(raw)) if raw is not None else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"override {item!r} is not KEY=VALUE", path="--set",
                                fix="write e.g. --set router.top_k=4")
        _set_path(out, key.strip().split("."), safeio.parse_yaml(text, f"--set {key.strip()}"))
    return out


BASED = ("model", "cluster.gpu", "cluster.host")  # entries a --set may adjust one field of (``base:``)


def _set_path(node: Any, parts: list[str], value: Any) -> None:
    for i, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(child, str) and ".".join(parts[: i + 1]) in BASED:
            child = node[part] = {"base": child}  # override fields of a catalogue model, GPU or host
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            dotted = ".".join(parts[: i + 1])
            raise ScenarioError(f"cannot set inside {dotted!r}, which is {child!r}", path=dotted,
                                fix=f"replace the whole field, e.g. --set {dotted}=...")
        node = child
    node[parts[-1]] = value


def parse_scenario(raw: Any, base_dir: str | Path = ".") -> Scenario:
    """Resolve names and files in ``raw`` and validate it against the schema."""
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario must be a mapping of sections", fix="start from scenarios/*.yaml")
    raw = dict(raw)
    if "model" not in raw:
        raise ScenarioError("missing", path="model", fix=f"name a model, e.g. one of {catalog.model_names()}")
    raw["model"] = _resolve_model(raw["model"], Path(base_dir))
    cluster = raw.get("cluster")
    if not isinstance(cluster, dict):
        raise ScenarioError("missing or not a mapping", path="cluster",
                            fix="give cluster: {gpu: h100, nodes: 1, gpus_per_node: 8}")
    # what the loader derives (the profile's path, provenance) is never taken from the file: recomputed
    cluster = {k: v for k, v in cluster.items() if k not in ("gpu_profile", "gpu_provenance", "host_provenance")}
    raw["cluster"] = {**cluster, **_resolve_gpu(cluster.get("gpu"), Path(base_dir))}
    domain = raw["cluster"]["gpu"].get("nvlink_domain") if isinstance(raw["cluster"]["gpu"], dict) else None
    if "gpus_per_node" not in cluster and domain:  # a node is the NVLink domain: 72 GPUs on an NVL72 rack
        raw["cluster"]["gpus_per_node"] = domain
    if cluster.get("host") is not None:
        raw["cluster"].update(_resolve_host(cluster["host"], Path(base_dir)))
    raw["router"] = _resolve_stats_path(raw.get("router"), Path(base_dir))
    raw = _resolve_trace_path(raw, Path(base_dir))
    if isinstance(raw.get("runtime"), dict):
        raw["runtime"] = _resolve_runtime(raw["runtime"])
    if isinstance(raw.get("offload"), dict):
        raw["offload"], rt = _resolve_offload_engine(raw["offload"], raw.get("runtime"))
        if rt is not None:
            raw["runtime"] = rt
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    return _default_scope(scenario)


def _resolve_runtime(rt: dict[str, Any]) -> dict[str, Any]:
    """A training framework named without ``layer_sync_s``: its fitted value (catalog/frameworks.json)."""
    if rt.get("framework") is None or rt.get("layer_sync_s") is not None:
        return rt
    fitted = catalog.framework_terms(str(rt["framework"])).get("layer_sync_s")
    return rt if fitted is None else {**rt, "layer_sync_s": fitted}


def _resolve_offload_engine(off: dict[str, Any], rt: Any) -> tuple[dict[str, Any], Any]:
    """A local engine named (``offload.engine``): its fitted terms (catalog/offload_engines.json) where the
    scenario leaves them unset; the launch cost goes to ``runtime`` (it counts when launches are eager)."""
    if off.get("engine") is None and off.get("llama_cpp") is not None:
        off = {**off, "engine": "llama.cpp"}  # llama.cpp's flags: llama.cpp runs it
    if off.get("engine") is None:
        return off, rt
    fitted = catalog.offload_engine_terms(str(off["engine"]))
    mine = {k: v for k, v in fitted.items() if k not in ENGINE_RUNTIME_TERMS}
    launch = {k: v for k, v in fitted.items() if k in ENGINE_RUNTIME_TERMS}
    if launch and (rt is None or isinstance(rt, dict)):
        rt = {**launch, **{k: v for k, v in (rt or {}).items() if v is not None}}
    return {**mine, **{k: v for k, v in off.items() if v is not None}}, rt


def _default_scope(s: Scenario) -> Scenario:
    """``workload.scope`` unset: the whole model when the model gives its attention shape, else MoE layers."""
    if s.workload.scope is not None:
        return s
    scope = "whole_model" if s.model.has_attention_shape else "moe_layers"
    return s.model_copy(update={"workload": s.workload.model_copy(update={"scope": scope})})


def _resolve_stats_path(router: Any, base: Path) -> Any:
    """Make ``router.stats.path`` absolute (relative to the scenario file) and check that it exists. A list
    of files, or a glob (``dumps/expert_distribution_recorder_*.pt``), names an engine's per-rank dump files:
    it becomes the sorted list of absolute paths (one file stays a string)."""
    if not isinstance(router, dict) or not isinstance(router.get("stats"), dict) or "path" not in router["stats"]:
        return router if router is not None else {}
    stats = dict(router["stats"])
    given = stats["path"]
    names = [str(x) for x in given] if isinstance(given, list) else [str(given)]
    paths = [q for n in names for q in (sorted(base.glob(n)) if any(c in n for c in "*?[") else [base / n])]
    if not paths:
        raise ScenarioError(f"no file matches {given!r}", path="router.stats.path",
                            fix="give the path (or a glob) of histogram or trace files, relative to the scenario file")
    for path in paths:
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "no such file"
            raise ScenarioError(f"{what} {str(path)!r}", path="router.stats.path",
                                fix="give the path of a histogram or trace file, relative to the scenario file")
    resolved = [str(q.resolve()) for q in paths]
    stats["path"] = resolved if isinstance(given, list) or len(resolved) > 1 else resolved[0]
    return {**router, "stats": stats}


def _resolve_trace_path(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make ``serving.arrival.path`` (a request trace) absolute, relative to the scenario file."""
    serving = raw.get("serving")
    arrival = serving.get("arrival") if isinstance(serving, dict) else None
    if not isinstance(arrival, dict) or "path" not in arrival:
        return raw
    path = base / str(arrival["path"])
    if not path.is_file():
        raise ScenarioError(f"no such file {str(arrival['path'])!r}", path="serving.arrival.path",
                            fix="give the path of a request trace (CSV or JSONL), relative to the scenario file")
    return {**raw, "serving": {**serving, "arrival": {**arrival, "path": str(path.resolve())}}}


def _resolve_model(value: Any, base: Path) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            return catalog.model_entry(value)
        except KeyError:
            raise ScenarioError(f"unknown model {value!r}", path="model",
                                fix=_choices(value, catalog.model_names())) from None
    if isinstance(value, dict) and "hf_config" in value:
        extra = normalise_keys({k: v for k, v in value.items() if k != "hf_config"})
        imported = _hf_file(value["hf_config"], base)
        return _keep_pattern({**imported, **extra}, imported, extra)
    if isinstance(value, dict) and "base" in value:
        base_entry = _resolve_model(value["base"], base)
        over = normalise_keys({k: v for k, v in value.items() if k != "base"})
        return _keep_pattern({**base_entry, **over}, base_entry, over)
    if isinstance(value, dict):
        return normalise_keys(value)
    raise ScenarioError("must be a catalogue name, a mapping, {base: name, ...} or {hf_config: path}",
                        path="model",
                        fix="e.g. model: deepseek-v3 (see `moesim list models`)")


def _keep_pattern(model: dict[str, Any], base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A base model given another block count keeps its per-block attention pattern, repeated from the first
    block (gpt-oss's sliding/full alternation on 4 blocks: sliding, full, sliding, full)."""
    n = over.get("num_hidden_layers")
    for key in ("attention_kinds", "ffn_kinds"):
        kinds = base.get(key)
        if kinds and key not in over and isinstance(n, int) and n > 0 and n != len(kinds):
            model[key] = [kinds[i % len(kinds)] for i in range(n)]
    return model


def _hf_file(name: Any, base: Path) -> dict[str, Any]:
    path = base / str(name)
    try:
        cfg = safeio.load_json(path, what="config.json")
        quant_file = path.with_name("hf_quant_config.json")  # NVIDIA ModelOpt checkpoints: the format is here
        quant = safeio.load_json(quant_file, what="hf_quant_config.json") if quant_file.is_file() else None
        return from_hf_config(cfg, path.parent.name or path.stem, quant)
    except ScenarioError as err:  # safeio: missing, not a file, not UTF-8, not JSON
        raise ScenarioError(err.problem, file=err.file, path="model.hf_config", fix=err.fix) from None
    except (ValueError, AttributeError) as exc:
        moe = "routed experts" not in str(exc) and "one JSON object" not in str(exc)  # MoE, not modelled
        raise ScenarioError(f"cannot read {str(path)!r}: {exc}", path="model.hf_config",
                            fix="describe the model by its fields instead (model: {base: <a close catalogue model>, "
                                "...}, `moesim list models`)" if moe else
                                "point at a Hugging Face MoE config.json") from None


def _with_base(value: Any, resolve: Any, base: Path, field: str) -> dict[str, Any] | None:
    """``{base: NAME, field: value, ...}``: the entry ``NAME`` resolves to (catalogue name, profile or file),
    with the given fields over it, labelled as the user's (None where ``value`` has no ``base``)."""
    if not (isinstance(value, dict) and "base" in value):
        return None
    parent = resolve(value["base"], base)
    kind = field.split(".")[-1]
    values, prov = dict(parent[kind]), dict(parent[f"{kind}_provenance"])
    for key, v in value.items():
        if key == "base":
            continue
        values[key] = v["value"] if isinstance(v, dict) and "value" in v else v
        prov[key] = f"user: {field}.{key} over {value['base']}"
    values["name"] = str(value.get("name") or f"{values.get('name', value['base'])} (adjusted)")
    return {**parent, kind: values, f"{kind}_provenance": prov}


def _resolve_gpu(value: Any, base: Path) -> dict[str, Any]:
    adjusted = _with_base(value, _resolve_gpu, base, "cluster.gpu")
    if adjusted is not None:
        return adjusted
    profile = None
    if isinstance(value, str) and value in catalog.profile_names():
        profile = catalog.profile_dir() / f"{value}.json"
    elif isinstance(value, str) and catalog.is_profile_file(base / value):
        profile = (base / value).resolve()
    if profile is not None:
        entry = catalog.read_gpu_file(profile)
        values, provenance = catalog.split_figures(entry)
        return {"gpu": values, "gpu_provenance": provenance, "gpu_profile": str(profile)}
    if isinstance(value, dict):
        entry = dict(value)
    elif isinstance(value, str) and value in catalog.gpu_names():
        entry = catalog.gpu_entry(value)
    elif isinstance(value, str) and (base / value).is_file():
        try:
            entry = catalog.read_gpu_file(base / value)
        except ValueError as exc:
            raise ScenarioError(f"cannot read GPU profile {value!r}: {exc}", path="cluster.gpu",
                                fix="use a profile written by calibrate/ or the catalogue's format") from None
    elif isinstance(value, str) and _looks_like_file(value):
        raise ScenarioError(f"no GPU file {str(base / value)!r}", path="cluster.gpu",
                            fix="give the path of a GPU file (relative to the scenario), or a catalogue name ("
                                "`moesim list gpus`)")
    else:
        raise ScenarioError(f"unknown GPU {value!r}", path="cluster.gpu",
                            fix=_choices(str(value), catalog.gpu_names() + catalog.profile_names())
                            + ", or a profile file path")
    values, provenance = catalog.split_figures(entry)
    return {"gpu": values, "gpu_provenance": provenance}


def _resolve_host(value: Any, base: Path) -> dict[str, Any]:
    """``cluster.host``: a catalogue machine, a YAML/JSON file of figures, the figures inline, or
    ``{base: NAME, field: value}``."""
    adjusted = _with_base(value, _resolve_host, base, "cluster.host")
    if adjusted is not None:
        return adjusted
    if isinstance(value, str) and value in catalog.host_names():
        entry = {"name": value, **catalog.host_entry(value)}
    elif isinstance(value, str) and (base / value).is_file():
        try:
            entry = dict(catalog.read_gpu_file(base / value))
        except ValueError as exc:
            raise ScenarioError(f"cannot read host file {value!r}: {exc}", path="cluster.host",
                                fix="use the format of moesim/config/catalog/hosts.yaml") from None
        entry = entry.get("host", entry) if isinstance(entry.get("host"), dict) else entry
    elif isinstance(value, dict):
        entry = dict(value)
    elif isinstance(value, str) and _looks_like_file(value):
        raise ScenarioError(f"no host file {str(base / value)!r}", path="cluster.host",
                            fix="give the path of a host file (relative to the scenario), or a catalogue name ("
                                "`moesim list hosts`)")
    else:
        raise ScenarioError(f"unknown host {value!r}", path="cluster.host",
                            fix=_choices(str(value), catalog.host_names()) + ", or a file of host figures")
    values, provenance = catalog.split_figures(entry)
    values.setdefault("name", str(value) if isinstance(value, str) else "inline")
    return {"host": values, "host_provenance": provenance}


def _looks_like_file(value: str) -> bool:
    return "/" in value or value.endswith((".yaml", ".yml", ".json"))


def _choices(value: str, names: list[str]) -> str:
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}choose one of {', '.join(names)}"


def _from_validation(exc: ValidationError) -> ScenarioError:
    err = exc.errors(include_url=False)[0]
    raw_loc = [str(p) for p in err["loc"]]
    loc, _ = _walk(raw_loc)
    path = ".".join(loc) or None
    if err["type"] == "extra_forbidden":
        allowed = sorted({name for m in _walk(raw_loc[:-1])[1] for name in m.model_fields})
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return ScenarioError("unknown key", path=path, fix=f"{hint}allowed keys: {', '.join(allowed)}")
    if err["type"] == "missing":
        return ScenarioError("missing", path=path, fix="add this required field")
    got = err.get("input")
    got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
    msg = err["msg"].removeprefix("Value error, ")
    if FIX_SEP in msg:  # a validator that knows the fix says it after FIX_SEP
        problem, fix = msg.split(FIX_SEP, 1)
        return ScenarioError(problem, path=path, fix=fix)
    return ScenarioError(f"{msg}{got_text}", path=path, fix=_fix_for(err["type"]))


FIX_SEP = " | fix: "


def _fix_for(kind: str) -> str:
    if "union_tag" in kind:
        return "set kind to one of the listed values"
    if kind.startswith(("greater", "less")):
        return "use a value in the allowed range"
    if kind in ("literal_error", "enum"):
        return "use one of the listed values"
    return "use a value of the expected type, e.g. as in scenarios/*.yaml"


def _walk(loc: list[str]) -> tuple[list[str], list[type[BaseModel]]]:
    """Drop discriminator tags from a pydantic error location; also return the schema models reached."""
    models: list[type[BaseModel]] = [Scenario]
    clean: list[str] = []
    for part in loc:
        nxt = [a for m in models if part in m.model_fields for a in _models_in(m.model_fields[part].annotation)]
        tagged = [m for m in models if "kind" in m.model_fields and m.model_fields["kind"].default == part]
        if tagged and not nxt:
            models = tagged
            continue
        clean.append(part)
        models = nxt or models
    return clean, models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    return []
