"""``python -m moesim`` entry point."""

from moesim.cli.main import main

main()
