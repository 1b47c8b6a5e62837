"""Sweep points as Ray tasks (``pip install 'moesim[ray]'``), on a local Ray instance or an existing
cluster (``address``). Same interface as the local pool: (item, result) pairs as tasks finish; stopped
early (Ctrl-C, or the caller stops iterating), it cancels what has not finished.

Tasks are self-contained (``bundle``): they carry the resolved scenario and the bytes of the files it
reads, so workers need no shared filesystem and no copy of the scenario files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from moesim.util.errors import MoesimError


def _ray():
    try:
        import ray
    except ImportError:
        raise MoesimError("--executor ray needs Ray: pip install 'moesim[ray]' (or use --executor local)") from None
    return ray


class RayExecutor:
    """Run items as Ray tasks. address: an existing cluster (``auto``, ``ray://host:10001``); None starts a
    local instance with ``jobs`` CPUs (0: all) for this run and stops it afterwards."""

    self_contained = True

    def __init__(self, address: str | None = None, jobs: int = 0) -> None:
        self.ray, self.address, self.jobs = _ray(), address, jobs

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        ray = self.ray
        items = list(items)
        if not items:
            return
        started = not ray.is_initialized()
        if started:
            kw = {} if self.address else {"num_cpus": self.jobs or None, "include_dashboard": False}
            ray.init(address=self.address, log_to_driver=False, configure_logging=False, **kw)
        task = ray.remote(num_cpus=1)(_call)
        refs = {task.remote(fn, item): item for item in items}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    yield refs.pop(ref), ray.get(ref)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
