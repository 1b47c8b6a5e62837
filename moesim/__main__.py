"""``python -m moesim`` entry point."""

from moesim.cli import main

main()
