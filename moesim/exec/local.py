"""How sweep points run. An executor maps a picklable function over items and yields (item, result) as they
finish, in any order; callers depend only on this, so a distributed engine can replace the local pool."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from itertools import chain, islice
from typing import Any, Protocol

from moesim.util import alloc
from moesim.util.registry import Registry


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
    """A pool of local worker processes (``jobs`` of them), started on the first ``run`` and kept for the
    next ones (a surface build's refinement rounds, the mixed-batch check), so workers start, and load the
    compiled kernels, once per command; ``close`` (or the executor's collection) ends them. Interrupted
    (Ctrl-C, or the caller stops iterating), it cancels what has not started and terminates the workers at
    once instead of waiting for the running items."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=die_with_parent,
                                             initargs=(os.getpid(),))
            weakref.finalize(self, self._pool.shutdown, wait=True)
        return self._pool

    def close(self) -> None:
        """End the workers (the next ``run`` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Items are taken from ``items`` as workers free up (at most ``jobs`` in flight), so a caller that
        yields them from a generator can leave out the ones earlier results made unnecessary."""
        source = iter(items)
        head = list(islice(source, self.jobs))
        if self.jobs == 1 or len(head) <= 1:
            yield from SerialExecutor().run(fn, chain(head, source))
            return
        pool = self._started()
        finished, pending = False, {pool.submit(fn, item): item for item in head}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
                for item in islice(source, len(head) - len(pending)):
                    pending[pool.submit(fn, item)] = item
            finished = True
        finally:
            if not finished:  # the workers may be mid-item: stop them now; a later run starts new ones
                _kill(pool)
                self._pool = None


def _ray(jobs: int, address: str | None) -> Executor:
    from moesim.exec.ray_executor import RayExecutor  # Ray is imported only when asked for

    return RayExecutor(address, jobs)


# name -> factory(jobs, address); ``jobs`` 0: one worker per core
EXECUTORS: Registry[Callable[[int, str | None], Executor]] = Registry("executor", "--executor")
EXECUTORS.register("local", lambda jobs, address: LocalProcessExecutor(jobs or os.cpu_count() or 1),
                   help="a pool of local worker processes (-j of them; 0: one per core)")
EXECUTORS.register("serial", lambda jobs, address: SerialExecutor(), help="one point after another, in this process")
EXECUTORS.register("ray", _ray, help="Ray tasks on a local instance or an existing cluster (--address)")


def make_executor(kind: str, jobs: int = 0, address: str | None = None) -> Executor:
    """The executor registered as ``kind`` (``EXECUTORS``) with ``jobs`` workers (0: one per core)."""
    return EXECUTORS.get(kind)(jobs, address)


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: drop queued work and terminate the worker processes."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=1.0)
    manager = getattr(pool, "_executor_manager_thread", None)  # let it see the pool gone and end now, not
    if manager is not None:  # at interpreter exit, where a late error of its would print a traceback
        manager.join(timeout=2.0)


def _parent_death_signal() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: no prctl
        return False


def die_with_parent(parent: int) -> None:
    """Worker start-up: end this worker when the process that started it dies (SIGKILL included), so a
    killed sweep leaves no orphans. Linux: the kernel's parent-death signal; elsewhere a thread that
    watches the parent id."""
    import signal
    import threading
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    # the parent's SIGTERM handler (the CLI's: raise and stop the command) came with the fork; the parent
    # stops a worker with SIGTERM, which must simply end it (its handler printed a traceback from the queue)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    alloc.tune()  # the worker is the pool's own process (moesim.util.alloc)
    if _parent_death_signal() and os.getppid() == parent:
        return

    def watch() -> None:
        import time
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
