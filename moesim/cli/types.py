"""Parameter types of the command line: registries as choices, checked, listed in --help and completed by
the shell (``eval "$(_MOESIM_COMPLETE=bash_source moesim)"``)."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import warnings
from typing import Any

import click

from moesim.util.errors import MoesimError, MoesimWarning
from moesim.util.registry import Registry


def _registry(where: str) -> Registry:
    """The registry at ``module:NAME``, imported when first asked for (``moesim --help`` imports none)."""
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


class CommaChoice(click.ParamType):
    """A comma-separated list of names from a registry: each checked, all shown in --help and completion.
    The names are read when used, so an entry registered after the CLI was built is a choice too."""

    name = "list"

    def __init__(self, registry: str) -> None:
        self.where = registry  # module:NAME

    @property
    def choices(self) -> list[str]:
        return _registry(self.where).names()

    def get_metavar(self, param, ctx=None) -> str:  # click's signature
        return "[" + "|".join(self.choices) + "],..."

    def convert(self, value, param, ctx):
        items = [x.strip() for x in str(value).split(",") if x.strip()] if isinstance(value, str) else list(value)
        bad = [x for x in items if x not in self.choices]
        if bad or not items:
            self.fail(f"{', '.join(bad) or 'nothing'} not one of {', '.join(self.choices)}", param, ctx)
        return ",".join(items)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem
        head, _, last = incomplete.rpartition(",")
        return [CompletionItem((head + "," if head else "") + c) for c in self.choices if c.startswith(last)]


class RegistryChoice(click.Choice):
    """One name from a registry, read when used (``click.Choice`` fixes its list when the CLI is built)."""

    def __init__(self, registry: str) -> None:
        self.where = registry  # module:NAME
        super().__init__([])

    @property
    def choices(self) -> list[str]:
        return _registry(self.where).names()

    @choices.setter
    def choices(self, _value) -> None:
        """click.Choice.__init__ assigns the choices; the registry stays their only source."""


PLACEMENT_LIST = CommaChoice("moesim.placement:PLACEMENTS")
EXECUTOR = RegistryChoice("moesim.exec:EXECUTORS")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: every command stops within its current step, keeps what finished and
    exits 143 (Ctrl-C: 130), the shell's codes for the two signals."""


_STOPPED_BY: list[int] = []  # the signal that stopped this process's command (the CLI owns the process)


def stop_code() -> int:
    """The exit code of a stopped command: 143 after SIGTERM, 130 after Ctrl-C."""
    return 128 + (_STOPPED_BY[-1] if _STOPPED_BY else signal.SIGINT)


def handle_signals() -> None:
    """SIGTERM raises Terminated in the main thread, as SIGINT raises KeyboardInterrupt (before: no handler,
    so a terminated plan wrote nothing and built surfaces were lost)."""
    def on_term(signum: int, _frame: Any) -> None:
        _STOPPED_BY.append(signum)
        raise Terminated()

    def on_int(signum: int, frame: Any) -> None:
        _STOPPED_BY.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)


class Group(click.Group):
    """Every MoesimError is one line on stderr and exit code 2; anything unexpected one "internal error" line
    and exit code 3 (MOESIM_DEBUG=1 shows the traceback); never a raw traceback."""

    def invoke(self, ctx: click.Context):
        try:
            with _warnings_as_lines():
                return super().invoke(ctx)
        except MoesimError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo("error: out of memory: the run is larger than this machine (fix: fewer nodes or "
                       "sim.sampled_tokens; `moesim check` prints the size estimate)", err=True)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM past the command's own handling: what finished is kept
            click.echo("interrupted: stopped (what finished was written)", err=True)
            sys.exit(stop_code())
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # the last line of defence: one line, not a traceback
            if os.environ.get("MOESIM_DEBUG"):
                raise
            click.echo(internal_error_line(exc), err=True)
            sys.exit(3)


@contextlib.contextmanager
def _warnings_as_lines():
    """moesim's warnings as one ``warning: ...`` line each on stderr, for the command's duration (the
    process's warning display is restored afterwards)."""
    def show(message, category, *_args, **_kw):
        if issubclass(category, MoesimWarning):
            click.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def internal_error_line(exc: BaseException) -> str:
    """One line for an unexpected exception: its type, message and innermost frame."""
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    at = f" at {where.tb_frame.f_code.co_filename.rsplit('/', 2)[-1]}:{where.tb_lineno}" if where else ""
    return (f"internal error: {type(exc).__name__}: {str(exc)[:200]}{at} (a bug in moesim: please report it "
            "with the command; MOESIM_DEBUG=1 shows the traceback)")


def dumps(obj: Any, **kw: Any) -> str:
    """JSON for the user (stdout or a file): always valid, a non-finite number written null."""
    import json

    from moesim.util.files import finite_or_null
    return json.dumps(finite_or_null(obj), allow_nan=False, **kw)
