"""The report of a measured-rows validation with one metric a row (``moesim validate training -o`` and
``moesim validate offload -o``): the document as JSON, the table as README.md and measured against
predicted as a PNG (fit and test rows apart, the ±10% band drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moesim.util.files import to_json, write_atomic


def write_measured_report(doc: dict[str, Any], text: str, out: Path, name: str, unit: str) -> list[Path]:
    """Write ``name``.json, README.md (``text``) and ``name``.png into ``out``; the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{name}.json", to_json(doc))
    rows = doc["rows"]
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    for split, marker in (("fit", "o"), ("test", "^")):
        sel = [r for r in rows if r.get("split") == split]
        ax.scatter([r["measured"] for r in sel], [r["predicted"] for r in sel], marker=marker, s=18,
                   label=f"{split} rows ({len(sel)})")
    vals = [v for r in rows for v in (r["measured"], r["predicted"]) if v > 0]
    lo, hi = (min(vals) / 1.2, max(vals) * 1.2) if vals else (1.0, 10.0)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for f in (0.9, 1.1):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel=f"measured {unit}",
           ylabel=f"predicted {unit}", title=f"{name}: measured vs predicted (dotted: ±10%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    plt.close(fig)
    write_atomic(out / "README.md", f"# moesim validate {name}\n\n![measured vs predicted]({name}.png)\n\n"
                                    f"```\n{text.rstrip()}\n```\n")
    return [out / f"{name}.json", out / "README.md", out / f"{name}.png"]
