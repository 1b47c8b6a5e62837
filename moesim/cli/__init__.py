"""The command line: click commands that turn arguments into library calls."""

from moesim.cli.main import main

__all__ = ["entry", "main"]


def entry() -> None:
    """The ``moesim`` command: the first run after an install uses numba's numpy twins while the kernels
    compile in the background (moesim.cli.jitwarm), then the click group."""
    import sys

    from moesim.cli.jitwarm import prepare
    prepare(sys.argv[1:])
    main()
