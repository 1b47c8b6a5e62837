"""One registry per extension point (placements, routing rules, all-to-all algorithms, cost models, layer
kinds, serving schedulers, executors): a name → entry map that the schema checks, the CLI's choices and
completion, ``moesim list`` and the docs all read, so adding an entry is one module plus one ``register``.

Modelled on Vidur's ``BaseRegistry`` (``register(key, cls)``), without its class-level global state: each
registry is an ordinary object owned by the package of its extension point.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from moesim.util.errors import MoesimError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: the object and a one-line description for ``--help``, ``moesim list`` and docs."""

    name: str
    obj: T
    help: str


class Registry(Generic[T]):
    """Names of one extension point, in registration order.

    >>> r = Registry("colour", "colour.kind")
    >>> r.register("red", 1, help="warm")
    1
    >>> r.get("red"), r.names()
    (1, ['red'])
    """

    def __init__(self, what: str, field: str) -> None:
        self.what, self.field = what, field  # e.g. "placement", "placement.kind" (the scenario field it fills)
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T, help: str = "") -> T:  # click's word for it
        """Add ``obj`` under ``name``; a name may be registered once (``unregister`` first to replace it)."""
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{self.what} name {name!r}: use letters, digits, '_' and '-'")
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, help)
        return obj

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry's object; an unknown name is a MoesimError that lists the choices."""
        if name not in self._entries:
            raise MoesimError(f"{self.field}: {self.unknown(name)}")
        return self._entries[name].obj

    def unknown(self, name: str) -> str:
        """"unknown placement 'x' (did you mean ...?); choose one of ..." (for errors that name their own field)."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.what} {name!r}{hint}; choose one of {', '.join(self.names())}"

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
