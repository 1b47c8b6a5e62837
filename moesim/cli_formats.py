"""Commands that write other tools' formats (registered on the main group in moesim.cli):
``moesim export-placement`` (SGLang's initial expert location)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from moesim import api
from moesim.cli_serve import SET_HELP


@click.command(name="export-placement")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_placement(scenario: Path, overrides: tuple[str, ...], out_file: Path) -> None:
    """Write the scenario's expert placement as SGLang's initial expert location JSON.

    \b
    OUT holds exactly {"physical_to_logical_map": [[...] per model layer]} (dense layers get the trivial
    mapping), what SGLang's --init-expert-location reader accepts; moesim's notes (scenario, plan, the
    flags SGLang needs to match) go beside it in OUT's name with .moesim.json. Example:
      moesim export-placement scenarios/deepseek-v3-decode-ep32.yaml --set placement.kind=eplb -o plan.json
      python -m sglang.launch_server ... --init-expert-location plan.json --ep-num-redundant-experts 32
    """
    from moesim.export import sglang_expert_location  # noqa: PLC0415
    from moesim.output import write_atomic  # noqa: PLC0415

    s = api.load_scenario(scenario, list(overrides))
    doc, notes = sglang_expert_location(s)
    sidecar = out_file.with_name(out_file.stem + ".moesim.json")
    write_atomic(out_file, json.dumps(doc) + "\n")
    write_atomic(sidecar, json.dumps(notes, indent=1) + "\n")
    rows = doc["physical_to_logical_map"]
    click.echo(f"wrote {out_file}: {len(rows)} layers x {len(rows[0])} physical experts (EP {s.cluster.num_gpus}); "
               f"notes in {sidecar}; SGLang flags: {notes['sglang_flags']}", err=True)
