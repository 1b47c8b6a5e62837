"""What "best" means when a study ranks its rows: the objective the user names (``--objective``), not a fixed
"highest aggregate throughput" (which always favours the biggest cluster: 8 nodes at 4.45k tokens/s/GPU
beat 2 nodes at 10.7k). Pure functions over result rows (sweep points, compared placements, runs).

A row is a result dict with some of ``throughput_tokens_per_s`` (tokens/s), ``tokens_per_s_per_gpu``
(tokens/s/GPU), ``iteration_time_s`` (s), ``gpus`` and ``gpu`` (the GPU's name); prices are USD per
GPU-hour, one for every GPU or one per GPU name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moesim.util.errors import MoesimError
from moesim.util.registry import Registry

Prices = float | dict[str, float] | None


@dataclass(frozen=True)
class Objective:
    """One way to rank rows: ``value(row, prices)`` (None when the row cannot be scored), its unit, and
    whether higher values are better."""

    name: str
    phrase: str  # "the highest throughput per GPU", as the page's recommendation says it
    title: str  # "Throughput per GPU", a chart's title
    unit: str
    higher: bool
    value: Callable[[dict[str, Any], Prices], float | None]


def per_gpu(row: dict[str, Any], prices: Prices = None) -> float | None:
    """tokens/s/GPU: the row's own figure, else its throughput over its GPU count."""
    v = row.get("tokens_per_s_per_gpu")
    if isinstance(v, int | float):
        return float(v)
    t, g = row.get("throughput_tokens_per_s"), row.get("gpus")
    return float(t) / g if isinstance(t, int | float) and isinstance(g, int) and g > 0 else None


def _throughput(row: dict[str, Any], prices: Prices = None) -> float | None:
    v = row.get("throughput_tokens_per_s")
    return float(v) if isinstance(v, int | float) else None


def _latency(row: dict[str, Any], prices: Prices = None) -> float | None:
    v = row.get("iteration_time_s")
    return float(v) if isinstance(v, int | float) and v > 0 else None


def price_of(row: dict[str, Any], prices: Prices) -> float:
    """USD per GPU-hour for the row's GPU: one price for all, or looked up by the swept ``cluster.gpu`` value
    or the row's ``gpu`` name (case-insensitive; a key may be part of the name: ``h800`` matches "NVIDIA H800
    SXM5 80GB")."""
    if prices is None:
        raise MoesimError("--objective cost needs GPU prices; give --gpu-price USD_PER_GPU_HOUR (e.g. 2.1) or "
                          "one per GPU: --gpu-price h800=2.1,h100=2.5")
    if isinstance(prices, int | float):
        return float(prices)
    names = [str(row[k]) for k in ("cluster.gpu", "gpu") if row.get(k) is not None]
    for name in names:
        hits = [p for k, p in prices.items() if k.lower() == name.lower()]
        hits = hits or [p for k, p in prices.items() if k.lower() in name.lower().split() + [name.lower()]]
        if len(hits) == 1:
            return hits[0]
    raise MoesimError(f"--gpu-price has no price for the GPU {names[0] if names else '(unnamed)'!r}; give "
                      f"one price for every GPU (--gpu-price 2.1) or name it (--gpu-price h800=2.1)")


def _cost(row: dict[str, Any], prices: Prices) -> float | None:
    """USD per million tokens: the GPU-hour price over the tokens one GPU makes in an hour."""
    g = per_gpu(row)
    return price_of(row, prices) / (g * 3600.0) * 1e6 if g else None


OBJECTIVES: Registry[Objective] = Registry("objective", "--objective")
for _o, _help in (
        (Objective("throughput-per-gpu", "the highest throughput per GPU", "Throughput per GPU", "tokens/s/GPU",
                   True, per_gpu),
         "tokens/s per GPU: what a GPU you pay for delivers (the default)"),
        (Objective("throughput", "the highest total throughput", "Throughput", "tokens/s", True, _throughput),
         "total tokens/s, however many GPUs it takes"),
        (Objective("cost", "the lowest cost per million tokens", "Cost per million tokens", "USD/Mtok", False, _cost),
         "USD per million tokens at --gpu-price (USD per GPU-hour)"),
        (Objective("latency", "the shortest iteration", "Iteration time", "s", False, _latency),
         "the shortest iteration time (step latency)")):
    OBJECTIVES.register(_o.name, _o, help=_help)


def parse_prices(text: str | None) -> Prices:
    """``--gpu-price``: ``2.1`` (every GPU) or ``h800=2.1,h100=2.5`` (USD per GPU-hour)."""
    if text is None or not text.strip():
        return None
    try:
        if "=" not in text:
            return _positive(float(text), text)
        out = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            out[name.strip()] = _positive(float(value), part)
        return out
    except ValueError:
        raise MoesimError(f"--gpu-price {text!r}: not a price; give USD per GPU-hour, e.g. --gpu-price 2.1 or "
                          "--gpu-price h800=2.1,h100=2.5") from None


def _positive(v: float, text: str) -> float:
    if not v > 0 or v == float("inf"):
        raise ValueError(text)
    return v


def best(rows: list[dict[str, Any]], objective: str = "throughput-per-gpu", prices: Prices = None) -> int | None:
    """Index of the best row that has no error and a score (ties: the first), or None."""
    o = OBJECTIVES.get(objective)
    scored = [(i, o.value(r, prices)) for i, r in enumerate(rows) if not r.get("error")]
    scored = [(i, v) for i, v in scored if v is not None]
    if not scored:
        return None
    return (max if o.higher else min)(scored, key=lambda iv: iv[1])[0]


def recommend_line(row: dict[str, Any], objective: str, prices: Prices, what: str) -> str:
    """"Recommendation (objective: ...): WHAT: its score", the objective stated on the page."""
    o = OBJECTIVES.get(objective)
    v = o.value(row, prices)
    score = f"{v * 1e3:,.4g} ms" if o.name == "latency" else f"{v:,.4g} {o.unit}" if o.name == "cost" else \
        f"{v:,.0f} {o.unit}"
    return (f"Recommendation by {o.phrase} (objective {o.name}; moesim report --objective "
            f"{'|'.join(OBJECTIVES.names())} ranks otherwise): {what}: {score}.")


def check(objective: str, gpu_price: str | None) -> Prices:
    """The parsed ``--gpu-price``, refused before any work when the objective needs a price and has none."""
    prices = parse_prices(gpu_price)
    if OBJECTIVES.get(objective).name == "cost" and prices is None:
        price_of({}, None)  # raises the message naming the fix
    return prices
