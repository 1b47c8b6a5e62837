"""The one loading boundary for every file moesim reads (scenario, sweep, plan, HF config, stats, trace,
profile, result folders): regular files only, a size limit, strict UTF-8, and YAML/JSON restricted to plain
JSON data (mappings with string keys, lists, strings, finite numbers, booleans, null) with alias expansion
bounded. Anything else is one ``ScenarioError`` naming the file, where in it, and the fix."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from moesim.util.errors import ScenarioError

MAX_TEXT_BYTES = 64 * 2**20  # a scenario, sweep, plan or config is kilobytes; 64 MiB is a corrupt file
MAX_NODES = 1_000_000  # YAML nodes after alias expansion ("billion laughs" expand past any real file)


def read_bytes(path: Path, limit: int = MAX_TEXT_BYTES, what: str = "file", probe: bool = False) -> bytes:
    """A regular file's bytes; a missing path, a directory, a device or an oversized file is refused.
    ``probe``: check only, read nothing (returns b"")."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ScenarioError("no such file", file=str(path), fix="check the path") from None
    except OSError as exc:
        raise ScenarioError(f"cannot read it ({exc.strerror or exc})", file=str(path), fix="check the path") from None
    if path.is_dir():
        raise ScenarioError(f"is a directory, not a {what}", file=str(path), fix=f"give the {what} inside it")
    if not path.is_file():
        raise ScenarioError(f"is not a regular file (a device or pipe?), not a {what}", file=str(path),
                            fix=f"give a {what} on disk")
    if st.st_size > limit:
        raise ScenarioError(f"is {st.st_size / 2**20:.0f} MiB, more than a {what} can be ({limit / 2**20:.0f} MiB)",
                            file=str(path), fix=f"check that this is the {what} you meant")
    if probe:
        return b""
    try:
        with path.open("rb") as fh:  # read what the file holds (read(n) would allocate n bytes up front)
            return fh.read(min(st.st_size, limit) + 1)
    except OSError as exc:
        raise ScenarioError(f"cannot read it ({exc.strerror or exc})", file=str(path),
                            fix="check permissions") from None


def read_text(path: Path, limit: int = MAX_TEXT_BYTES, what: str = "file") -> str:
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})", file=str(path),
                            fix=f"save the {what} as UTF-8 text") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML with JSON's types only: dates and times stay strings; sets, binary, ordered pairs and
    every other explicit tag are refused."""


_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_PLAIN = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "seq", "map")}


def _check_nodes(node: yaml.Node, file: str) -> None:
    """Refuse non-JSON tags, recursive aliases and documents whose alias expansion is too large."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ScenarioError("a YAML alias refers to itself (a recursive anchor)", file=file,
                                path=f"line {n.start_mark.line + 1}", fix="write the data out without the anchor")
        if n.tag not in _PLAIN:
            raise ScenarioError(f"YAML tag {n.tag.replace('tag:yaml.org,2002:', '!!')} is not plain data", file=file,
                                path=f"line {n.start_mark.line + 1}",
                                fix="use mappings, lists, strings, numbers, true/false and null only")
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        active.discard(key)
        sizes[key] = total
        if total > MAX_NODES:
            raise ScenarioError(f"expands to more than {MAX_NODES:,} values (YAML aliases)", file=file,
                                path=f"line {n.start_mark.line + 1}", fix="write the data out without aliases")
        return total

    size(node)


def _check_data(x: Any, file: str, where: str = "") -> None:
    """String keys and finite numbers, all the way down."""
    if isinstance(x, dict):
        for k, v in x.items():
            if not isinstance(k, str):
                raise ScenarioError(f"key {k!r} is not a string", file=file, path=where or None,
                                    fix="quote the key")
            _check_data(v, file, f"{where}.{k}" if where else k)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _check_data(v, file, f"{where}[{i}]")
    elif isinstance(x, float) and not math.isfinite(x):
        raise ScenarioError(f"{x} is not a finite number", file=file, path=where or None, fix="give a finite value")


def parse_yaml(text: str, file: str) -> Any:
    """YAML text as plain JSON-compatible data (see the module docstring)."""
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, file)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"not valid YAML ({problem})", file=file, path=where, fix="fix the YAML syntax") from None
    except RecursionError:
        raise ScenarioError("nested too deeply to be a scenario", file=file, fix="flatten the data") from None
    except ValueError as exc:  # an integer literal of more than Python's 4,300 digits, and the like
        raise ScenarioError(f"a number moesim cannot read ({str(exc)[:100]})", file=file,
                            fix="use a number of at most 18 digits") from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_data(data, file)
    return data


def load_yaml(path: Path, what: str = "YAML file") -> Any:
    return parse_yaml(read_text(path, what=what), str(path))


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


class _NotFinite(ValueError):
    """A JSON number too large for a float (1e999): found where ``_check_data`` says, for its path."""


def _finite(literal: str) -> float:
    x = float(literal)
    if x - x != 0:  # inf
        raise _NotFinite(literal)
    return x


def parse_json(text: str, file: str) -> Any:
    """JSON text as data; every key is a string and every number finite (checked as it is parsed: walking a
    1 MB profile afterwards took 0.2 s)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _NotFinite:
        _check_data(json.loads(text), file)  # names the path of the number
        raise ScenarioError("a number is not finite", file=file, fix="give a finite value") from None
    except RecursionError:
        raise ScenarioError("nested too deeply", file=file, fix="check that this is the file you meant") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise ScenarioError(f"not valid JSON ({exc})", file=file, fix="fix the JSON (or regenerate the file)") from None


def load_json(path: Path, what: str = "JSON file", limit: int = MAX_TEXT_BYTES) -> Any:
    return parse_json(read_text(path, limit, what), str(path))
