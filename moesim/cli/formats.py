"""Commands that write other tools' formats (registered on the main group in moesim.cli.main):
``moesim export-placement`` (SGLang's initial expert location) and ``moesim export-launch`` (engine launch
commands; ``moesim plan --emit`` writes them for the plan's answer)."""

from __future__ import annotations

from pathlib import Path

import click

from moesim import api
from moesim.cli.serve import SET_HELP
from moesim.cli.types import RegistryChoice, dumps


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
    from moesim.launch.placement_file import sglang_expert_location
    from moesim.util.files import write_atomic
    s = api.load_scenario(scenario, list(overrides))
    doc, notes = sglang_expert_location(s)
    sidecar = out_file.with_name(out_file.stem + ".moesim.json")
    write_atomic(out_file, dumps(doc) + "\n")
    write_atomic(sidecar, dumps(notes, indent=1) + "\n")
    rows = doc["physical_to_logical_map"]
    click.echo(f"wrote {out_file}: {len(rows)} layers x {len(rows[0])} physical experts (EP {s.cluster.num_gpus}); "
               f"notes in {sidecar}; SGLang flags: {notes['sglang_flags']}", err=True)


def list_doc(what: str) -> list[dict]:
    """The catalogue entries (or placement strategies) as JSON-ready records, one per name."""
    from moesim.config import catalog
    if what in api.REGISTRIES:
        return [{"name": e.name, "doc": e.help} for e in api.registry(what).entries()]
    names, entry = {"models": (catalog.model_names, catalog.model_entry),
                    "gpus": (catalog.gpu_names, catalog.gpu_entry),
                    "hosts": (catalog.host_names, catalog.host_entry)}[what]
    return [{"id": n, **entry(n)} for n in names()]


def list_text(what: str) -> str:
    from moesim.present.tables import gpus_table, hosts_table, models_table
    if what in api.REGISTRIES:
        return "\n".join(f"{r['name']:<18} {r['doc']}" for r in list_doc(what)) + "\n"
    return {"models": models_table, "gpus": gpus_table, "hosts": hosts_table}[what]()


@click.command(name="export-launch")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--engine", "engines", type=RegistryChoice("moesim.launch:LAUNCHERS"), multiple=True, required=True,
              help="The engine (and version) to launch on (repeatable: one folder each with several).")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for launch.sh, launch.json and the files they read (placement maps).")
@click.option("--json", "as_json", is_flag=True, help="Print launch.json's content too.")
def export_launch(scenario: Path, engines: tuple[str, ...], overrides: tuple[str, ...], out_dir: Path,
                  as_json: bool) -> None:
    """Write the commands that start ENGINE as the scenario's serving deployment.

    \b
    One launch.sh serves every node: ROLE picks aggregated/prefill/decode, NODE_RANK the node inside its
    instance, HEAD_ADDR the instance's head node. Every flag is one that engine version's own parser
    defines (checked before writing); what the engine cannot be told (a placement vLLM cannot load, a
    scheduler policy it lacks) is written as a note in launch.sh and launch.json. Example:
      moesim export-launch scenarios/deepseek-v3-serve-h800.yaml --engine sglang -o launch/
      ROLE=aggregated NODE_RANK=0 HEAD_ADDR=10.0.0.1 bash launch/launch.sh     # on each node, its own rank
    `moesim plan PLAN --emit sglang -o DIR` writes the same for the plan's answer.
    """
    s = api.load_scenario(scenario, list(overrides))
    for engine in engines:
        where = out_dir if len(engines) == 1 else out_dir / engine
        write_launch(s, engine, where, as_json, str(scenario))


def write_launch(s, engine: str, out_dir: Path, as_json: bool, source: str) -> None:
    """Render ``s`` for ``engine`` and write it under ``out_dir`` (launch.sh, launch.json, its files)."""
    from moesim.launch import render
    from moesim.util.errors import ScenarioError
    from moesim.util.files import write_atomic
    try:
        launch = render(s, engine)
    except ScenarioError as err:
        raise err.located(file=source) from None
    doc = launch.doc()
    for name, text in launch.files.items():
        write_atomic(out_dir / name, text)
    write_atomic(out_dir / "launch.json", dumps(doc, indent=1) + "\n")
    write_atomic(out_dir / "launch.sh", launch.script())
    (out_dir / "launch.sh").chmod(0o755)
    if as_json:
        click.echo(dumps(doc, indent=1))
    roles = ", ".join(f"{r['role']} {r['instances']}x{r['gpus_per_instance']} GPUs" for r in doc["roles"])
    click.echo(f"wrote {out_dir / 'launch.sh'} ({engine} {launch.version}: {roles}; {len(launch.notes)} note(s))",
               err=True)
    for note in launch.notes:
        click.echo(f"  note: {note}", err=True)


def emit_launches(p, path: Path, result: dict, engines: tuple[str, ...], out_dir: Path | None) -> None:
    """``moesim plan --emit``: the launch files of the plan's overall answer, one folder per engine."""
    from moesim.plan import scenario_of
    if not engines or result.get("best") is None or out_dir is None:
        return
    s = scenario_of(p, path.parent, result["best"])
    for engine in engines:
        write_launch(s, engine, out_dir / f"launch-{engine}", False, str(path))


def check_emit(engines: tuple[str, ...], out_dir: Path | None) -> None:
    """Before a plan runs: ``--emit`` needs ``-o`` (the launch files go there)."""
    from moesim.launch import LAUNCHERS
    from moesim.util.errors import ScenarioError
    if engines and out_dir is None:
        raise ScenarioError("--emit writes launch files into the output folder", path="--emit", fix="add -o DIR")
    local = [e for e in engines if LAUNCHERS.get(e).local]
    if local:
        serving = ", ".join(n for n in LAUNCHERS.names() if not LAUNCHERS.get(n).local)
        raise ScenarioError(f"{local[0]} runs offload scenarios on one machine; a plan's answer is a serving "
                            "deployment", path="--emit", fix=f"emit one of {serving}")
