"""Engines' own flags, as extracted from their argument parsers (``tools/extract_engine_flags.py`` writes
``flags/ENGINE-VERSION.json``): every command a renderer writes is checked against them before it is
written, so a flag the engine version does not define, a deprecated one, a value outside its choices or a
JSON key its config class does not take is a moesim bug caught here, never a launch that fails on a cluster.
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import Any

FLAGS = Path(__file__).resolve().parent / "flags"


@functools.cache
def fixture(engine: str, version: str) -> dict[str, Any]:
    """The fixture of ``engine`` ``version``: {engine, version, source, flags, json_fields?, ...}."""
    return json.loads((FLAGS / f"{engine}-{version}.json").read_text(encoding="utf-8"))


def problems(args: list[str], engine: str, version: str) -> list[str]:
    """What the engine's parser would refuse (or warn about) in ``args``, the arguments after its entry
    point (``--flag value`` or ``--flag=value``; positional words are the model and are not checked)."""
    fx = fixture(engine, version)
    known, json_fields = fx["flags"], fx.get("json_fields", {})
    out, i = [], 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-"):
            continue
        flag, eq, value = word.partition("=")
        spec = known.get(flag)
        if spec is None:
            out.append(f"{flag}: not a flag of {engine} {version}")
            continue
        if spec["deprecated"]:
            out.append(f"{flag}: deprecated in {engine} {version}")
        if not spec["value"]:
            if eq:
                out.append(f"{flag}: takes no value")
            continue
        if not eq:
            if i >= len(args):
                out.append(f"{flag}: needs a value")
                continue
            value, i = args[i], i + 1
        if spec["choices"] is not None and value not in spec["choices"]:
            out.append(f"{flag} {value}: not one of {', '.join(spec['choices'])}")
        if flag in json_fields:
            out.extend(_json_problems(flag, value, json_fields[flag]))
    return out


def _json_problems(flag: str, value: str, fields: list[str]) -> list[str]:
    try:
        doc = json.loads(value)
    except ValueError:
        return [f"{flag}: {value!r} is not JSON"]
    if not isinstance(doc, dict):
        return [f"{flag}: {value!r} is not a JSON object"]
    return [f"{flag}: {key!r} is not a field of its config" for key in doc if key not in fields]


def shell(argv: list[str]) -> str:
    """``argv`` as one shell line; words holding ``$NAME`` stay expandable (double quotes)."""
    return " ".join(f'"{w}"' if "$" in w and '"' not in w else shlex.quote(w) for w in argv)
