"""Malformed and hostile inputs derived from shipped files, for the fuzz test (tests/test_fuzz.py) and the
longer campaign (bench/fuzz_campaign.py). A case is (file name, bytes, command): the command's argv names
the file as {path}. Mutations: deleted or misspelled keys, wrong nesting and types, NaN/inf/huge/negative
numbers, bad unit strings, YAML that is not plain data (!!set, !!binary, dates, recursive and exponential
aliases), broken YAML syntax, bytes that are not UTF-8, and files named where data is expected that are
directories, devices, corrupt archives or broken JSON."""

from __future__ import annotations

import random
from typing import Any

import yaml

# a small scenario: every command on it finishes in well under a second
BASE = {"seed": 1, "model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
        "cluster": {"gpu": "h100", "nodes": 2, "gpus_per_node": 4,
                    "intra_node": {"bandwidth": "450GB/s", "latency": "2us"},
                    "inter_node": {"nic_bandwidth": "50GB/s", "latency": "5us"}},
        "router": {"stats": {"kind": "zipf", "alpha": 1.1}, "bias": [0.0] * 8},
        "placement": {"kind": "eplb", "redundant_experts": 0},
        "workload": {"mode": "decode", "tokens_per_gpu": 32, "context_tokens": 512}}
SWEEP = {"base": "base.yaml", "grid": {"cluster.nodes": [1, 2], "placement.kind": ["contiguous", "eplb"]}}
PLAN = {"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2}, "gpus": {"h100": {"price_per_hour": 2.5}},
        "gpus_per_node": 4, "serving": {"input_tokens": {"kind": "constant", "value": 256},
                                        "output_tokens": {"kind": "constant", "value": 16},
                                        "slo": {"ttft_s": 0.5, "tpot_s": 0.05}},
        "target": {"output_tokens_per_s": 1}, "search": {"nodes": [1], "max_batch": [4]},
        "effort": {"requests": 50, "max_requests": 100, "rate_steps": 2}}

HOSTILE = [None, True, False, -1, 0, -0.5, 2**63, 10**30, 1e308, "1e400", ".nan", ".inf", "-.inf", "9e99", "abc",
           [], {}, [1, 2], {"a": 1}, "1e400GB/s", "9e99min", "1e30GB/s", "-3us", "80 furlongs", "0GB/s",
           "2026-01-01", "null", 0.999999, 1e-300, "", "x" * 300]
RAW_VALUES = ["!!set {a, b}", "!!binary aGVsbG8=", "!!timestamp 2001-12-14", "!!python/object:os.system ls",
              "&a [*a]", ".nan", "[1, [2, [3, [4]]]]", "{a: !!omap [b: 1]}"]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
RECURSIVE = "model: &m {base: mixtral-8x7b, self: *m}\n"


def _leaves(d: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(d, dict):
        out = [path] if path else []
        for k, v in d.items():
            out += _leaves(v, (*path, k))
        return out
    if isinstance(d, list):
        return [path] + [p for i, v in enumerate(d) for p in _leaves(v, (*path, i))]
    return [path]


def _get(d: Any, path: tuple) -> Any:
    for p in path:
        d = d[p]
    return d


def _set(d: Any, path: tuple, value: Any) -> None:
    _get(d, path[:-1])[path[-1]] = value


def _dump(d: Any) -> bytes:
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True).encode()


def mutate(doc: dict, rng: random.Random) -> bytes:
    """One malformed version of ``doc`` as file bytes."""
    d = yaml.safe_load(yaml.safe_dump(doc))
    paths = [p for p in _leaves(d) if p]
    path = rng.choice(paths)
    kind = rng.choice(["delete", "typo", "hostile", "hostile", "nest", "raw", "syntax", "bytes", "bomb", "deep"])
    if kind == "delete":
        parent = _get(d, path[:-1])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        return _dump(d)
    if kind == "typo" and isinstance(path[-1], str):
        parent = _get(d, path[:-1])
        parent[path[-1][:-1] + rng.choice("xzq_")] = parent.pop(path[-1])
        return _dump(d)
    if kind == "nest":
        _set(d, path, rng.choice([[_get(d, path)], {"value": _get(d, path)}]))
        return _dump(d)
    if kind == "raw":  # YAML that is not plain data, spliced in as text
        text = _dump({**d, "__x__": "RAW"}).decode().replace("__x__: RAW", f"{path[0]}: {rng.choice(RAW_VALUES)}")
        return text.encode()
    if kind == "syntax":
        text = _dump(d)
        cut = rng.randrange(1, len(text))
        return rng.choice([text[:cut], text[:cut] + b":\n\t- [", text.replace(b": ", b" ", 1), b"{" + text])
    if kind == "bytes":
        text = _dump(d)
        at = rng.randrange(len(text))
        return text[:at] + rng.choice([b"\xff\xfe", b"\xc3\x28", b"\x00", b"\xed\xa0\x80"]) + text[at:]
    if kind == "bomb":
        return rng.choice([BOMB, RECURSIVE, BOMB + _dump(d).decode()]).encode()
    if kind == "deep":
        return ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode()
    value = rng.choice(HOSTILE)
    if isinstance(value, str) and value in (".nan", ".inf", "-.inf", "1e400", "null"):
        text = _dump({**d, "__x__": "RAW"}).decode()
        return text.replace("__x__: RAW", f"{path[0]}: {value}").encode() if len(path) == 1 else \
            _dump_with(d, path, value)
    _set(d, path, value)
    return _dump(d)


def _dump_with(d: dict, path: tuple, raw: str) -> bytes:
    _set(d, path, "__RAW__")
    return _dump(d).decode().replace("__RAW__", raw).replace("'" + raw + "'", raw).encode()


def case(rng: random.Random) -> tuple[str, bytes, list[str], dict[str, bytes]]:
    """(file name, bytes, argv with {path}, extra files by name) for one malformed input."""
    which = rng.choice(["run", "run", "check", "sweep", "plan", "stats", "report", "hf", "stats_file"])
    if which in ("run", "check"):
        return "s.yaml", mutate(BASE, rng), [which, "{path}"], {}
    if which == "sweep":
        return "sw.yaml", mutate(SWEEP, rng), ["sweep", "{path}", "-o", "{dir}/out", "-j", "1"], \
            {"base.yaml": _dump(BASE)}
    if which == "plan":
        return "p.yaml", mutate(PLAN, rng), ["plan", "{path}", "-j", "1"], {}
    if which == "stats":
        junk = rng.choice([b"", b"PK\x03\x04broken", b"\x93NUMPY\x01\x00garbage", b"[1, 2, [3]", b"{\"a\": NaN}",
                           b"1,2\nx,y\n", b"\xff\xfe\x00"])
        name = rng.choice(["t.npz", "t.npy", "t.json", "t.csv", "t.pt", "t.txt"])
        return name, junk, ["stats", "{path}", "--gpus", rng.choice(["4", "0", "3"]),
                            "--step", rng.choice(["mean", "9", "foo", "-1"])], {}
    if which == "report":
        junk = rng.choice([b"", b"{", b"[]", b"{\"layers\": 3}", b"\xff", b"null", b"{\"totals\": {}}"])
        return "result.json", junk, ["report", "{dir}", "-o", "{dir}/rep"], {}
    if which == "hf":
        cfg = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 8,
               "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_attention_heads": 32, "vocab_size": 32000}
        return "s.yaml", _dump({**BASE, "model": {"hf_config": "config.json"}}), ["run", "{path}"], \
            {"config.json": mutate(cfg, rng)}
    stats = rng.choice([{"kind": "histogram", "path": "loads.npz"}, {"kind": "trace", "path": "loads.npz"},
                        {"kind": "histogram", "path": "/dev/zero"}, {"kind": "histogram", "path": "."},
                        {"kind": "histogram", "path": "loads.json", "step": rng.choice([0, 99, "x"])}])
    junk = rng.choice([b"PK\x03\x04broken", b"[[1, 2], [3]]", b"{\"counts\": [[1e999]]}", b"[[-1, 2]]", b""])
    return "s.yaml", _dump({**BASE, "router": {"stats": stats}}), ["run", "{path}"], \
        {"loads.npz": junk, "loads.json": junk}


def run_case(c: tuple[str, bytes, list[str], dict[str, bytes]], folder) -> tuple[int, str]:
    """Write the case's files into ``folder`` and run the command in-process; (exit code, output)."""
    from pathlib import Path

    from click.testing import CliRunner

    from moesim.cli.main import main
    folder = Path(folder)
    name, data, argv, extra = c
    for fname, content in extra.items():
        (folder / fname).write_bytes(content)
    (folder / name).write_bytes(data)
    args = [a.replace("{path}", str(folder / name)).replace("{dir}", str(folder)) for a in argv]
    res = CliRunner().invoke(main, args, catch_exceptions=True)
    out = res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback
        out += "Traceback\n" + "".join(traceback.format_exception(res.exception))
    return res.exit_code, out
