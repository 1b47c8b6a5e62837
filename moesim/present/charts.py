"""Chart specs for report pages: plain data (kind, labels, series) drawn twice from the same spec, as an
interactive SVG in the HTML page (report_assets.js: hover values, drag to zoom, double-click to reset)
and as a PNG for the Markdown page (matplotlib). Palettes are shared so a series has one colour in both.

A spec: ``{"kind": "line" | "bar" | "heatmap", "title", "caption", "xlabel", "ylabel", "yunit"}`` plus
``series [{"name", "x"?, "y"}]`` (line: x and y; bar: y per category in ``categories``, ``stacked``) or
``z [rows][cols]`` with ``zlabel`` (heatmap), and optional ``hlines [{"y", "label"}]``.
"""

from __future__ import annotations

import html
import io
import json
import math
from importlib import resources
from typing import Any

# Kelly's colours of maximum contrast (22, white and black left out), in the order the page uses them
PALETTE = ["#0067A5", "#F38400", "#008856", "#BE0032", "#875692", "#882D17", "#E68FAC", "#848482", "#8DB600",
           "#F3C300", "#604E97", "#2B3D26", "#A1CAF1", "#E25822", "#C2B280", "#B3446C", "#654522", "#F99379",
           "#DCD300", "#F6A600"]
DASHES = ["-", "--", ":", "-."]
STYLE = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.25, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 9}


def clean(v: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become null (the page shows a gap)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list | tuple):
        return [clean(x) for x in v]
    return float(v) if hasattr(v, "dtype") else v


def line(title: str, caption: str, xlabel: str, ylabel: str, series: list[dict[str, Any]], **kw: Any) -> dict:
    return {"kind": "line", "title": title, "caption": caption, "xlabel": xlabel, "ylabel": ylabel,
            "series": [{"name": s["name"], "x": clean(list(s["x"])), "y": clean(list(s["y"]))} for s in series], **kw}


def bar(title: str, caption: str, categories: list[str], ylabel: str, series: list[dict[str, Any]],
        stacked: bool = False, **kw: Any) -> dict:
    return {"kind": "bar", "title": title, "caption": caption, "categories": [str(c) for c in categories],
            "ylabel": ylabel, "stacked": stacked,
            "series": [{"name": s["name"], "y": clean(list(s["y"]))} for s in series], **kw}


def heatmap(title: str, caption: str, z: list[list[float]], xlabel: str, ylabel: str, zlabel: str,
            xticks: list[str] | None = None, yticks: list[str] | None = None) -> dict:
    """``z[row][col]``; ``xticks``/``yticks``: a label per column/row (default: their indices)."""
    return {"kind": "heatmap", "title": title, "caption": caption, "z": clean([list(r) for r in z]),
            "xlabel": xlabel, "ylabel": ylabel, "zlabel": zlabel, "height": 360,
            **({"xticks": [str(t) for t in xticks]} if xticks else {}),
            **({"yticks": [str(t) for t in yticks]} if yticks else {})}


def html_div(spec: dict) -> str:
    """The chart's place in the page; the script draws it from the spec."""
    data = html.escape(json.dumps(spec, separators=(",", ":"), allow_nan=False), quote=True)
    return f'<div class="chart" data-spec="{data}"></div>'


def script() -> str:
    return resources.files("moesim.present").joinpath("report_assets.js").read_text(encoding="utf-8")


def png(spec: dict) -> bytes:
    """The same chart as a PNG (matplotlib), legend outside the data, long category labels rotated."""
    import matplotlib  # a Figure of its own, no pyplot: the caller's backend and figures are left alone
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9, 3.6 if spec["kind"] != "heatmap" else 4.0))
        ax = fig.subplots()
        {"line": _png_line, "bar": _png_bar, "heatmap": _png_heat}[spec["kind"]](fig, ax, spec)
        ax.set(title=spec["title"], xlabel=spec.get("xlabel", ""), ylabel=spec.get("ylabel", ""))
        if len(spec.get("series", [])) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _style(i: int) -> dict[str, Any]:
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": DASHES[(i // len(PALETTE)) % len(DASHES)]}


def _nan(v: list) -> list[float]:
    return [math.nan if x is None else x for x in v]


def _png_line(fig, ax, spec: dict) -> None:
    from matplotlib.ticker import MaxNLocator
    xs = [x for s in spec["series"] for x in s["x"] if x is not None]
    if xs and all(float(x).is_integer() for x in xs):  # node or GPU counts: no tick at 2.5
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for i, s in enumerate(spec["series"]):
        ax.plot(s["x"], _nan(s["y"]), marker="o" if len(s["x"]) <= 60 else None, ms=3, label=s["name"], **_style(i))
    for h in spec.get("hlines", []):
        ax.axhline(h["y"], color="grey", ls="--", lw=1)
        ax.annotate(h["label"], (1.0, h["y"]), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=7, color="grey")


def _png_bar(fig, ax, spec: dict) -> None:
    cats, series = spec["categories"], spec["series"]
    n = 1 if spec.get("stacked") else len(series)
    width, bottom = 0.8 / n, [0.0] * len(cats)
    for i, s in enumerate(series):
        ys = [0.0 if v is None else v for v in s["y"]]
        xs = [j - 0.4 + (0 if spec.get("stacked") else i * width) + width / 2 for j in range(len(cats))]
        ax.bar(xs, ys, width=width, bottom=bottom if spec.get("stacked") else None, label=s["name"],
               color=PALETTE[i % len(PALETTE)])
        if spec.get("stacked"):
            bottom = [b + y for b, y in zip(bottom, ys)]
    rotate = len(cats) > 8 or any(len(c) > 8 for c in cats)
    step = max(1, len(cats) // 40)
    ax.set_xticks(range(0, len(cats), step), cats[::step], rotation=40 if rotate else 0,
                  ha="right" if rotate else "center", fontsize=7)


def _png_heat(fig, ax, spec: dict) -> None:
    im = ax.imshow(spec["z"], aspect="auto", cmap="plasma", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=spec.get("zlabel", ""))
    ax.grid(False)
    rows, cols = len(spec["z"]), len(spec["z"][0]) if spec["z"] else 0
    for axis, n, labels, room in ((ax.xaxis, cols, spec.get("xticks"), 24), (ax.yaxis, rows, spec.get("yticks"), 14)):
        step = max(1, math.ceil(n / room))
        axis.set_ticks(range(0, n, step), [labels[k] if labels else str(k) for k in range(0, n, step)], fontsize=7)
