"""Request streams: arrival times and prompt/output lengths, from laws or from public trace formats.

Every generator is pure: a ``numpy.random.Generator`` in, arrays out. Trace formats:
- Azure LLM inference trace (Azure/AzurePublicDataset, 2023/2024 code and conversation CSVs):
  ``TIMESTAMP`` (date-time text), ``ContextTokens``, ``GeneratedTokens``;
- Mooncake (kvcache-ai/Mooncake traces, JSONL): ``timestamp`` (milliseconds), ``input_length``,
  ``output_length`` (``hash_ids`` ignored);
- csv (moesim's own, e.g. ``scenarios/traces/sample-requests.csv``): ``arrival_s``, ``input_tokens``,
  ``output_tokens``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from moesim.config.serving import ServingSpec
from moesim.util.errors import ScenarioError


@dataclass(frozen=True)
class Requests:
    """A request stream, sorted by arrival. arrival_s [R] seconds from 0; input_tokens, output_tokens [R]."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def lengths(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token counts (int64, >= 1) drawn from a length law."""
    if spec.kind == "constant":
        return np.full(n, spec.value, dtype=np.int64)
    if spec.kind == "uniform":
        return rng.integers(spec.low, spec.high + 1, size=n)
    if spec.kind == "random":  # SGLang bench_serving sample_random_requests: randint(int(len·ratio), len + 1)
        return rng.integers(max(int(spec.value * spec.range_ratio), 1), spec.value + 1, size=n)
    # lognormal with mean m and cv c: sigma^2 = ln(1 + c^2), mu = ln m - sigma^2 / 2
    s2 = np.log1p(spec.cv**2)
    x = rng.lognormal(np.log(spec.mean) - s2 / 2, np.sqrt(s2), size=n)
    return np.clip(np.rint(x), 1, spec.max).astype(np.int64)


def gaps(arrival, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` inter-arrival gaps in seconds for a law-based arrival process."""
    mean = 1.0 / arrival.rate_per_s
    if arrival.kind == "constant":
        return np.full(n, mean)
    if arrival.kind == "poisson":
        return rng.exponential(mean, size=n)
    shape = 1.0 / arrival.cv**2  # gamma: cv^2 = 1/shape, mean = shape * scale
    return rng.gamma(shape, mean / shape, size=n)


def generate(spec: ServingSpec, rng: np.random.Generator) -> Requests:
    """The request stream a serving section describes (trace or laws), cut by ``requests`` and ``duration_s``."""
    if spec.arrival.kind == "trace":
        req = read_trace(spec.arrival.path, spec.arrival.format)
        t = req.arrival_s / spec.arrival.speedup
        req = Requests(t, req.input_tokens, req.output_tokens, req.source)
    elif spec.load is not None:  # closed loop: the simulation sends each request when a slot frees
        n = spec.requests or 1000
        req = Requests(np.zeros(n), lengths(spec.input_tokens, n, rng), lengths(spec.output_tokens, n, rng), "")
    else:
        n = spec.requests or 1000
        t = np.cumsum(gaps(spec.arrival, n, rng))
        t -= t[0]  # the first request arrives at time 0
        req = Requests(t, lengths(spec.input_tokens, n, rng), lengths(spec.output_tokens, n, rng),
                       f"{spec.arrival.kind} arrivals at {spec.arrival.rate_per_s:g}/s")
    if spec.load is not None:
        req = Requests(np.zeros(len(req)), req.input_tokens, req.output_tokens,
                       f"closed loop: {spec.load.concurrency} requests in flight"
                       + (f" ({req.source} lengths)" if req.source else ""))
    keep = np.ones(len(req), dtype=bool)
    if spec.requests is not None:
        keep[spec.requests:] = False
    if spec.duration_s is not None:
        keep &= req.arrival_s <= spec.duration_s * (1 + 1e-12)  # cumulative sums round up
    return Requests(req.arrival_s[keep], req.input_tokens[keep], req.output_tokens[keep], req.source)


def read_trace(path: str | Path, fmt: str = "auto") -> Requests:
    """Read a request trace; one ScenarioError naming the file and the problem when it is malformed."""
    path = Path(path)
    where = "serving.arrival.path"
    try:
        from moesim.util import safeio
        text = safeio.read_text(path, limit=1 << 30, what="request trace")
    except (OSError, UnicodeDecodeError, ScenarioError) as exc:
        raise ScenarioError(f"cannot read the trace ({exc})", file=str(path), path=where,
                            fix="give a readable CSV or JSONL trace") from None
    if not text.strip():
        raise ScenarioError("the trace is empty", file=str(path), path=where, fix="give a trace with requests")
    if fmt == "auto":
        fmt = "mooncake" if text.lstrip().startswith("{") else _csv_kind(text)
    try:
        rows = _mooncake(text) if fmt == "mooncake" else _csv(text, fmt)
    except (KeyError, ValueError, TypeError) as exc:
        raise ScenarioError(f"not a valid {fmt} trace ({exc})", file=str(path), path=where,
                            fix=_FORMAT_FIX[fmt]) from None
    if not rows:
        raise ScenarioError("the trace has no requests", file=str(path), path=where, fix=_FORMAT_FIX[fmt])
    arr = np.array(rows, dtype=float)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    if (arr[:, 1:] < 1).any():
        raise ScenarioError("a request has fewer than 1 input or output token", file=str(path), path=where,
                            fix="token counts must be >= 1")
    t = arr[:, 0] - arr[0, 0]
    return Requests(t, arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64), f"{fmt} trace {path.name}")


_FORMAT_FIX = {
    "azure": "Azure trace columns: TIMESTAMP, ContextTokens, GeneratedTokens",
    "mooncake": "Mooncake JSONL lines: {\"timestamp\": ms, \"input_length\": n, \"output_length\": m}",
    "csv": "moesim CSV columns: arrival_s, input_tokens, output_tokens",
}


def _csv_kind(text: str) -> str:
    header = text.splitlines()[0]
    return "azure" if "ContextTokens" in header else "csv"


def _csv(text: str, fmt: str) -> list[tuple[float, float, float]]:
    cols = ("TIMESTAMP", "ContextTokens", "GeneratedTokens") if fmt == "azure" else (
        "arrival_s", "input_tokens", "output_tokens")
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in cols if c not in (reader.fieldnames or [])]
    if missing:
        raise KeyError(f"missing column(s) {', '.join(missing)}")
    out = []
    for i, row in enumerate(reader, start=2):
        short = [c for c in cols if row.get(c) in (None, "")]
        if short:
            raise ValueError(f"line {i}: no value for {', '.join(short)} (a short row)")
        try:
            t = _timestamp(row[cols[0]]) if fmt == "azure" else float(row[cols[0]])
            out.append(_row(i, t, float(row[cols[1]]), float(row[cols[2]])))
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc) if str(exc).startswith("line ") else f"line {i}: {exc}") from None
    return out


MAX_TOKENS = 10**8  # tokens of one request: far past any model's context, and exact in float64 and int64


def _row(i: int, t: float, inp: float, out: float) -> tuple[float, float, float]:
    """One request, checked: a finite time, whole token counts from 1 to MAX_TOKENS (inf, NaN, 1e30 or 2^63
    used to wrap to negative int64 and give negative throughput with the SLO 'met')."""
    if not math.isfinite(t):
        raise ValueError(f"line {i}: arrival time {t} is not a finite number")
    for name, v in (("input", inp), ("output", out)):
        if not math.isfinite(v) or v != int(v) or not 1 <= v <= MAX_TOKENS:
            raise ValueError(f"line {i}: {name} tokens {v:g} is not a whole number from 1 to {MAX_TOKENS:,}")
    return t, inp, out


def _timestamp(text: str) -> float:
    """Azure's TIMESTAMP ('2023-11-16 18:15:46.6805900') in seconds; extra fraction digits are cut to 6."""
    text = text.strip()
    head, dot, frac = text.partition(".")
    return datetime.fromisoformat(head + (dot + frac[:6] if dot else "")).timestamp()


def _mooncake(text: str) -> list[tuple[float, float, float]]:
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(_row(i, float(d["timestamp"]) / 1e3, float(d["input_length"]), float(d["output_length"])))
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {i}: {exc.msg}") from None
        except KeyError as exc:
            raise KeyError(f"line {i}: no {exc}") from None
    return out
