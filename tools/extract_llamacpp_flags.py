"""Write llama-server's command-line flags as moesim's fixture (moesim/launch/flags/llama.cpp-VERSION.json),
read from llama.cpp's own parser source, ``common/arg.cpp``: each ``add_opt(common_arg({flags}, ...))`` with
its arity (a ``common_arg`` takes the help text alone for a switch, a value hint and the help for a valued
flag) and the programs it applies to (``.set_examples`` / ``.set_excludes``: only flags llama-server takes are
kept). Names and arity only; nothing of the help text is copied.

llama.cpp has no Python package of its own; llama-cpp-python's source release vendors one exact llama.cpp
tree, which is what moesim reads (the version in the fixture names it):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz
    python tools/extract_llamacpp_flags.py llama_cpp_python-0.3.36/vendor/llama.cpp/common/arg.cpp \
        --version llama-cpp-python-0.3.36
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "moesim" / "launch" / "flags"
SERVER = "LLAMA_EXAMPLE_SERVER"


def _literal_end(text: str, i: int) -> int:
    """Index after the C string literal starting at ``text[i] == '"'``."""
    i += 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _args(text: str, start: int) -> tuple[list[str], int]:
    """The top-level arguments of the call whose '(' is at ``start`` (as source text), and the index after
    its ')'."""
    depth, i, args, cur = 0, start, [], start + 1
    while True:
        c = text[i]
        if c == '"':
            i = _literal_end(text, i)
            continue
        if c == "'":
            i += 3 if text[i + 1] != "\\" else 4
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(text[cur:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(text[cur:i].strip())
            cur = i + 1
        i += 1


def _examples(tail: str) -> tuple[set[str] | None, set[str]]:
    """(.set_examples list or None, .set_excludes list) of the chained calls in ``tail``."""
    only = re.search(r"\.set_examples\(\{([^}]*)\}", tail)
    excl = re.search(r"\.set_excludes\(\{([^}]*)\}", tail)
    names = lambda m: {x.strip() for x in m.group(1).split(",") if x.strip()}  # noqa: E731
    return (names(only) if only else None), (names(excl) if excl else set())


def extract(text: str) -> dict[str, dict]:
    """{flag: {"value": takes a value, "choices": None, "deprecated": False}} for llama-server."""
    flags: dict[str, dict] = {}
    for m in re.finditer(r"add_opt\(common_arg\(", text):
        args, end = _args(text, m.end() - 1)
        names = re.findall(r'"(-[^"]+)"', args[0])
        stmt_end = text.find(";", end)
        only, excluded = _examples(text[end:stmt_end])
        # arg.cpp's add_opt: every program takes COMMON options, unless the option names others only
        if (only is not None and not only & {SERVER, "LLAMA_EXAMPLE_COMMON"}) or SERVER in excluded:
            continue
        rest = args[1:]
        if rest[0].startswith("{"):  # (flags, negated flags, help, handler): a switch and its "--no-" form
            names += re.findall(r'"(-[^"]+)"', rest[0])
            rest = rest[1:]
        handler = next(i for i, a in enumerate(rest) if a.startswith("["))
        for name in names:
            flags[name] = {"value": handler >= 2, "choices": None, "deprecated": False}
    return dict(sorted(flags.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("arg_cpp", type=Path)
    ap.add_argument("--version", required=True, help="what the tree is, e.g. llama-cpp-python-0.3.36")
    a = ap.parse_args()
    flags = extract(a.arg_cpp.read_text(encoding="utf-8"))
    doc = {"engine": "llama.cpp", "version": a.version,
           "source": f"common/arg.cpp of the llama.cpp tree vendored by {a.version} (llama-server's flags)",
           "flags": flags}
    out = OUT / f"llama.cpp-{a.version}.json"
    out.write_text(json.dumps(doc, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(flags)} flags")


if __name__ == "__main__":
    main()
