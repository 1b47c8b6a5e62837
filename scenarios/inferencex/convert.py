"""Turn rows of the InferenceX benchmark export (SemiAnalysis; see shared reference ``e2e/README.md``) into
moesim serving scenarios: the deployment each row measured, as engines ran it.

    python scenarios/inferencex/convert.py ROWS.csv OUT_DIR     # one YAML per row, named by its row number

The mapping lives in the library (``moesim.studies.e2e.inferencex``, which ``moesim validate e2e`` runs);
this script writes its scenarios as files to read, edit or run one by one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from moesim.studies.e2e.inferencex import read_rows, scenario


def convert(rows_csv: Path, out_dir: Path) -> list[Path]:
    """One scenario file per row of ``rows_csv`` in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(read_rows(rows_csv), start=1):
        path = out_dir / f"row-{i:03d}.yaml"
        note = f"# InferenceX row {i}: {row['framework']} {row['image']} ({row['run_url']})\n"
        path.write_text(note + yaml.safe_dump(scenario(row, i), sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    for p in convert(Path(sys.argv[1]), Path(sys.argv[2])):
        print(p)
