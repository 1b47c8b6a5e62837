"""Project error types.

A :class:`ScenarioError` is a user mistake: it names the file, the field's dotted path and the fix.
The CLI prints its one-line ``str`` and exits with code 2; it never shows a traceback.
"""

from __future__ import annotations


class MoesimError(Exception):
    """Base class of every error moesim raises on purpose."""


class ScenarioError(MoesimError):
    """Bad user input: ``file: path: problem; fix``."""

    def __init__(self, problem: str, *, file: str | None = None, path: str | None = None,
                 fix: str | None = None) -> None:
        self.file, self.path, self.problem, self.fix = file, path, problem, fix
        super().__init__(self.line())

    def line(self) -> str:
        """The one-line message shown to the user."""
        where = ": ".join(p for p in (self.file, self.path) if p)
        text = f"{where}: {self.problem}" if where else self.problem
        return f"{text} (fix: {self.fix})" if self.fix else text

    def located(self, file: str | None = None, prefix: str | None = None) -> ScenarioError:
        """A copy with the file and/or a path prefix filled in."""
        path = ".".join(p for p in (prefix, self.path) if p) or None
        return ScenarioError(self.problem, file=file or self.file, path=path, fix=self.fix)


class EngineError(MoesimError):
    """The engine cannot go on with these numbers (simulated time stopped advancing, a solver did not
    converge): one line saying which, exit code 2."""


class MoesimWarning(UserWarning):
    """Something the user should know before waiting (e.g. the exact network model forced on many GPUs);
    the CLI prints it as one "warning:" line on stderr."""
