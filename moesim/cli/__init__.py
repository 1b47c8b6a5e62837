"""The command line: click commands that turn arguments into library calls."""

from moesim.cli.main import main

__all__ = ["main"]
