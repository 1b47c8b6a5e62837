"""What ``moesim run`` prints and writes for the results that are not one iteration: an offload walk over
decode steps, a pipelined step."""

from __future__ import annotations

from pathlib import Path

import click


def offload_out(result, as_json: bool, out_dir: Path | None, trace_file: Path | None) -> None:
    """An offload run's table or JSON, its result.json and its trace."""
    from moesim.present import (
        output,
        trace,
    )
    from moesim.present.offload_text import table
    click.echo(output.to_json(result.doc) if as_json else table(result.doc), nl=False)
    if out_dir:
        path = out_dir / "result.json"
        output.write_atomic(path, output.to_json(result.doc))
        click.echo(f"wrote {path}", err=True)
    if trace_file:
        output.write_atomic(trace_file, trace.chrome_trace(result.records, result.programs, result.doc["gpus"]))
        click.echo(f"wrote {trace_file}", err=True)


def pipeline_out(result, as_json: bool, out_dir: Path | None, trace_file: Path | None) -> None:
    """A pipelined run's table or JSON, its result.json and the schedule's trace."""
    from moesim.present import output, pipeline_text
    click.echo(output.to_json(result.doc) if as_json else pipeline_text.table(result.doc), nl=False)
    for path, text in ((out_dir / "result.json" if out_dir else None, output.to_json(result.doc)),
                       (trace_file, pipeline_text.chrome_trace(result.timeline) if trace_file else "")):
        if path:
            output.write_atomic(path, text)
            click.echo(f"wrote {path}", err=True)


# the introduction of a silicon profile's validation page (moesim validate kernels)
SILICON_INTRO = ("Held-out rows of the imported table (none was fitted): every 4th model shape whole, the "
                 "token counts between the fitted ones on the other shapes, and every power-law row (the fit "
                 "used balanced rows only). Measured by others (aiconfigurator), not by calibrate/.")
