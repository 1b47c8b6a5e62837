"""The GPU's expert cache: which (layer, expert) weights sit in GPU memory, step after step. Pure.

Policies (the cache is a pool of ``slots`` expert-sized slots per GPU, shared by every layer):
- ``static``: the planned set never changes; a fetched expert passes through a staging buffer and is
  dropped after use (Fiddler's and llama.cpp's fixed placements; a "static hot set").
- ``lru``: a fetched expert takes the slot of the least recently used one.
- ``lfu``: of the least frequently used one, counting every use since the start (cached or not: "perfect"
  LFU), ties to the least recent.
Accesses come in batches: one layer of one decode step uses a set of experts at once (``use_batch``):
hits are judged against the cache as the batch found it, then every expert of the batch counts as used
now, then the misses that were fetched are inserted. Remaining ties (same recency and count) go to the
expert the router statistics make hotter (``prior``), then to the key. These priorities do not depend on
the cache size, so LRU and this LFU are stack algorithms (Mattson et al., IBM Systems Journal 9(2),
1970): a larger cache holds a superset of a smaller one's experts at every step, and its hit rate is
never lower (tested). Planned experts start in the cache with recency ordered by their rank.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

Key = tuple[int, int]  # (MoE layer, expert)


class ExpertCache:
    """Slots of one GPU. ``initial``: planned experts, hottest first (the first ``slots`` are kept);
    ``prior``: the last tie-break, larger is kept longer (e.g. the expert's popularity)."""

    def __init__(self, slots: int, policy: str, initial: Iterable[Key] = (),
                 prior: Callable[[Key], float] | None = None) -> None:
        self.slots, self.policy = max(0, int(slots)), policy
        self.prior = prior or (lambda key: 0.0)
        self.clock = 0
        self.count: dict[Key, int] = {}
        self.last: dict[Key, int] = {}
        self.cached: set[Key] = set()
        self._heap: list[tuple[tuple[float, ...], Key]] = []
        for rank, key in enumerate(initial):
            if rank >= self.slots:
                break
            self.last[key] = -(rank + 1)
            self.cached.add(key)
            self._push(key)

    def __contains__(self, key: Key) -> bool:
        return key in self.cached

    def __len__(self) -> int:
        return len(self.cached)

    def _priority(self, key: Key) -> tuple[float, ...]:
        last, count = self.last.get(key, -(1 << 62)), self.count.get(key, 0)
        return (count, last, self.prior(key)) if self.policy == "lfu" else (last, count, self.prior(key))

    def _push(self, key: Key) -> None:
        heapq.heappush(self._heap, (self._priority(key), key))

    def use(self, key: Key) -> bool:
        """A batch of one expert (``use_batch``)."""
        return self.use_batch([key])[0]

    def use_batch(self, keys: list[Key]) -> list[bool]:
        """One layer's batch uses ``keys`` (distinct) at once: whether each was in the cache as the batch
        found it. Every key counts as used now (recency and frequency)."""
        hits = [key in self.cached for key in keys]
        self.clock += 1
        for key, hit in zip(keys, hits):
            self.count[key] = self.count.get(key, 0) + 1
            self.last[key] = self.clock
            if hit and self.policy != "static":
                self._push(key)
        return hits

    def insert(self, key: Key) -> Key | None:
        """Keep a fetched expert (lru / lfu; static keeps nothing): the evicted key, or None."""
        out = self.insert_batch([key])
        return out[0] if out else None

    def insert_batch(self, keys: list[Key]) -> list[Key]:
        """Keep a batch's fetched experts: afterwards the cache holds the ``slots`` keys of highest
        priority among what it held and ``keys`` (so one of them may not stay). Returns the evicted keys."""
        if self.policy == "static" or self.slots == 0:
            return []
        for key in keys:
            if key not in self.cached:
                self.last.setdefault(key, self.clock)
                self.cached.add(key)
                self._push(key)
        evicted = []
        while len(self.cached) > self.slots:
            victim = self._victim()
            self.cached.discard(victim)
            evicted.append(victim)
        return evicted

    def _victim(self) -> Key:
        """The cached key of lowest priority (stale heap entries are skipped)."""
        while True:
            prio, key = heapq.heappop(self._heap)
            if key in self.cached and prio == self._priority(key):
                return key
