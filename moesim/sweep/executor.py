"""How sweep points run. An executor maps a picklable function over items and yields (item, result) as they
finish, in any order; callers depend only on this, so a distributed engine can replace the local pool."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol


class Executor(Protocol):
    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (item, fn(item)) for every item as each finishes."""
        ...


class SerialExecutor:
    """In this process, one after another (tests, debugging, one-core machines)."""

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, fn(item)


class LocalProcessExecutor:
    """A pool of local worker processes (``jobs`` of them)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        items = list(items)
        if self.jobs == 1 or len(items) <= 1:
            yield from SerialExecutor().run(fn, items)
            return
        with ProcessPoolExecutor(max_workers=self.jobs) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
