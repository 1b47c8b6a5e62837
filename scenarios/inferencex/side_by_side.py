"""moesim's and AISimulate's errors on the same InferenceX rows, per group, as a Markdown table.

Usage: python scenarios/inferencex/side_by_side.py E2E_JSON AISIMULATE_CSV [--split test]
E2E_JSON: ``moesim validate e2e -o DIR`` wrote DIR/e2e.json; AISIMULATE_CSV: aisimulate_rows.py's output
(docs/aisimulate-e2e-rows.csv). Cells are MAPE / bias in %, over the rows both tools ran.
"""

from __future__ import annotations

import csv
import json
import sys

METRICS = ("ttft_s", "tpot_s", "tokens_per_s_per_gpu")


def main(e2e: str, ais: str, split: str | None) -> str:
    rows = [r for r in json.load(open(e2e, encoding="utf-8"))["rows"] if "error" not in r]
    if split:
        rows = [r for r in rows if r["split"] == split]
    theirs = {int(r["row"]): r for r in csv.DictReader(open(ais, encoding="utf-8")) if not r["error"]}
    rows = [r for r in rows if r["row"] in theirs]
    out = ["| group | rows | " + " | ".join(f"moesim {m} | AISimulate {m}" for m in ("TTFT", "TPOT", "tok/s/GPU"))
           + " |", "|---|---|" + "---|---|" * 3]
    groups = sorted({r["group"] for r in rows}) + ["all"]
    for g in groups:
        sel = rows if g == "all" else [r for r in rows if r["group"] == g]
        cells = []
        for m in METRICS:
            mine = [r["predicted"][m] / r["measured"][m] - 1 for r in sel]
            ais_e = [float(theirs[r["row"]][m]) / r["measured"][m] - 1 for r in sel]
            cells += [_cell(mine), _cell(ais_e)]
        out.append(f"| {'**all**' if g == 'all' else g} | {len(sel)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _cell(e: list[float]) -> str:
    return f"{100 * sum(map(abs, e)) / len(e):.1f} / {100 * sum(e) / len(e):+.1f}"


if __name__ == "__main__":
    args = sys.argv[1:]
    split = args[args.index("--split") + 1] if "--split" in args else None
    print(main(args[0], args[1], split))
