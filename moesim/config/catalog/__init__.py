"""Catalogues shipped as data: real MoE models and GPUs, each figure with its label and source."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

LABELS = ("measured", "datasheet", "published", "estimated")


def _read(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    # libyaml's parser where PyYAML has it (the shipped catalogues: 0.14 s -> 0.01 s a process), same data
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # a safe loader
    return {k: v for k, v in data.items() if not k.startswith("_")}


@cache
def _models() -> dict[str, dict[str, Any]]:
    return _read("models.yaml")


@cache
def _gpus() -> dict[str, dict[str, Any]]:
    return _read("gpus.yaml")


@cache
def _hosts() -> dict[str, dict[str, Any]]:
    """hosts.yaml plus the measured host profiles in hosts/ (written by moesim/calibrate/host.py)."""
    out = _read("hosts.yaml")
    d = Path(str(resources.files(__package__).joinpath("hosts")))
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        out[path.stem] = json.loads(path.read_text(encoding="utf-8"))["host"]
    return out


def host_names() -> list[str]:
    """Catalogue host machines (offload scenarios), sorted."""
    return sorted(_hosts())


def host_entry(name: str) -> dict[str, Any]:
    """A copy of one host's figures ``{field: {value, label, source}}``. KeyError if unknown."""
    return dict(_hosts()[name])


def model_names() -> list[str]:
    """Catalogue model names, sorted."""
    return sorted(_models())


def gpu_names() -> list[str]:
    """Catalogue GPU names, sorted."""
    return sorted(_gpus())


def model_entry(name: str) -> dict[str, Any]:
    """A copy of one model's config mapping (HF key names), with ``name`` set. KeyError if unknown."""
    return {"name": name, **_models()[name]}


def gpu_entry(name: str) -> dict[str, Any]:
    """A copy of one GPU's figures: ``{field: {value, label, source}}`` plus ``name``. KeyError if unknown."""
    return dict(_gpus()[name])


def read_gpu_file(path: Path) -> dict[str, Any]:
    """A GPU profile file in the catalogue's format (figures as {value, label, source} or plain values): a
    new mapping whose figures the caller reads, not changes. Parsed once per process for each version of a
    file (path, modification time, size): a silicon profile is about 1 MB of kernel tables, 40 ms to parse,
    which a plan otherwise paid for each of its deployments."""
    try:
        st = path.stat()
    except OSError:
        return dict(_parse_gpu_file(path, 0, -1))  # the reader names the missing file
    return dict(_parse_gpu_file(path, st.st_mtime_ns, st.st_size))


@lru_cache(maxsize=32)
def _parse_gpu_file(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    from moesim.util import safeio
    data = safeio.load_json(path, "GPU profile") if path.suffix == ".json" else safeio.load_yaml(path, "GPU profile")
    if not isinstance(data, dict):
        raise ValueError("a GPU profile must be a mapping of figures")
    if "gpu" in data and isinstance(data["gpu"], dict):  # calibrate/ profiles nest figures under `gpu`
        data = data["gpu"]
    return data


def split_figures(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``{field: {value, label, source}}`` into plain values and ``{field: 'label: source'}``."""
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for key, fig in entry.items():
        if isinstance(fig, dict) and "value" in fig:
            values[key] = fig["value"]
            provenance[key] = f"{fig.get('label', 'unlabelled')}: {fig.get('source', 'no source given')}"
        else:
            values[key] = fig
    return values, provenance


PROFILE_SUFFIX = ".json"


def profile_dir() -> Path:
    """Measured profiles shipped with the package (written by calibrate/)."""
    return Path(str(resources.files(__package__).joinpath("profiles")))


def profile_names() -> list[str]:
    """Names of the shipped measured profiles, sorted."""
    d = profile_dir()
    return sorted(p.stem for p in d.glob(f"*{PROFILE_SUFFIX}") if "." not in p.stem) if d.is_dir() else []


# The one place that decides a profile's kind from its format tag: ``measured`` (moesim.calibrate: pieces
# timed with PyTorch and fitted) or ``silicon`` (kernel tables measured by others, moesim.calibrate.import_aic).
# The cost-model registry (moesim.hw.costs.loader.COST_MODELS) builds each kind.
PROFILE_FORMATS = {"moesim-profile/": "measured", "moesim-silicon/": "silicon"}


def profile_kind(doc: Any) -> str | None:
    """``measured``, ``silicon``, or None when ``doc`` is not a moesim profile document."""
    fmt = doc.get("format", "") if isinstance(doc, dict) else ""
    return next((kind for tag, kind in PROFILE_FORMATS.items() if isinstance(fmt, str) and fmt.startswith(tag)),
                None)


def is_profile_file(path: Path) -> bool:
    """Whether ``path`` is a calibrate/ profile (JSON with a moesim profile format tag)."""
    if path.suffix != PROFILE_SUFFIX or not path.is_file():
        return False
    try:
        return profile_kind(json.loads(path.read_text(encoding="utf-8"))) is not None
    except (OSError, ValueError):
        return False


FRAMEWORKS = Path(__file__).parent / "frameworks.json"  # training frameworks' fitted terms (moesim.studies.e2e)


OFFLOAD_ENGINES = Path(__file__).parent / "offload_engines.json"  # local engines' fitted terms (moesim.studies.e2e)


def offload_engine_terms(name: str) -> dict[str, float]:
    """A local inference engine's fitted offload terms ({term: value}), {} for one none were fitted for."""
    if not OFFLOAD_ENGINES.is_file():
        return {}
    return dict(json.loads(OFFLOAD_ENGINES.read_text(encoding="utf-8")).get("engines", {}).get(name, {}))


def framework_terms(name: str) -> dict[str, float]:
    """A training framework's fitted terms ({term: value}), {} for a framework none were fitted for."""
    if not FRAMEWORKS.is_file():
        return {}
    return dict(json.loads(FRAMEWORKS.read_text(encoding="utf-8")).get("frameworks", {}).get(name, {}))
