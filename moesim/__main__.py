"""``python -m moesim`` entry point."""

from moesim.cli import entry

entry()
