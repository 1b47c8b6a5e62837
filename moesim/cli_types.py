"""Parameter types of the command line: registries as choices, checked, listed in --help and completed by
the shell (``eval "$(_MOESIM_COMPLETE=bash_source moesim)"``)."""

from __future__ import annotations

import click


class CommaChoice(click.ParamType):
    """A comma-separated list of names from a registry: each checked, all shown in --help and completion."""

    name = "list"

    def __init__(self, choices: list[str]) -> None:
        self.choices = choices

    def get_metavar(self, param, ctx=None) -> str:  # noqa: ARG002 (click's signature)
        return "[" + "|".join(self.choices) + "],..."

    def convert(self, value, param, ctx):
        items = [x.strip() for x in str(value).split(",") if x.strip()] if isinstance(value, str) else list(value)
        bad = [x for x in items if x not in self.choices]
        if bad or not items:
            self.fail(f"{', '.join(bad) or 'nothing'} not one of {', '.join(self.choices)}", param, ctx)
        return ",".join(items)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem  # noqa: PLC0415

        head, _, last = incomplete.rpartition(",")
        return [CompletionItem((head + "," if head else "") + c) for c in self.choices if c.startswith(last)]


PLACEMENT_LIST = CommaChoice(["contiguous", "round_robin", "random", "greedy", "eplb", "eplb_hierarchical",
                              "eplb_global", "optimal", "affinity", "time_aware"])
