"""The GPU's expert cache: which (layer, expert) weights sit in GPU memory, step after step. Pure.

Policies (the cache is a pool of ``slots`` expert-sized slots per GPU, shared by every layer):
- ``static``: the planned set never changes; a fetched expert passes through a staging buffer and is
  dropped after use (Fiddler's and llama.cpp's fixed placements; a "static hot set").
- ``lru``: a fetched expert takes the slot of the least recently used one.
- ``lfu``: of the least frequently used one, counting every use since the start (cached or not: "perfect"
  LFU), ties to the least recent. Both priorities are the same for every cache size, so LRU and this LFU
  are stack algorithms (Mattson et al., IBM Systems Journal 9(2), 1970): a larger cache holds a superset
  of a smaller one's experts at every step, and its hit rate is never lower (tested).
Planned experts start in the cache hottest first: their initial recency is ordered by rank, so the
coldest planned expert is the first to go.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

Key = tuple[int, int]  # (MoE layer, expert)


class ExpertCache:
    """Slots of one GPU. ``initial``: planned experts, hottest first (the first ``slots`` are kept)."""

    def __init__(self, slots: int, policy: str, initial: Iterable[Key] = ()) -> None:
        self.slots, self.policy = max(0, int(slots)), policy
        self.clock = 0
        self.count: dict[Key, int] = {}
        self.last: dict[Key, int] = {}
        self.cached: set[Key] = set()
        self._heap: list[tuple[tuple[int, ...], Key]] = []
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

    def _priority(self, key: Key) -> tuple[int, ...]:
        last = self.last.get(key, -(1 << 62))
        return (self.count.get(key, 0), last) if self.policy == "lfu" else (last,)

    def _push(self, key: Key) -> None:
        heapq.heappush(self._heap, (self._priority(key), key))

    def use(self, key: Key) -> bool:
        """A token batch uses ``key``: True if it was in the cache. Updates recency and frequency."""
        hit = key in self.cached
        self.clock += 1
        self.count[key] = self.count.get(key, 0) + 1
        self.last[key] = self.clock
        if hit and self.policy != "static":
            self._push(key)
        return hit

    def insert(self, key: Key) -> Key | None:
        """Keep a fetched expert (lru / lfu; static keeps nothing): the evicted key, or None."""
        if self.policy == "static" or self.slots == 0 or key in self.cached:
            return None
        evicted = None
        if len(self.cached) >= self.slots:
            evicted = self._victim()
            self.cached.discard(evicted)
        self.last.setdefault(key, self.clock)
        self.cached.add(key)
        self._push(key)
        return evicted

    def _victim(self) -> Key:
        """The cached key of lowest priority (stale heap entries are skipped)."""
        while True:
            prio, key = heapq.heappop(self._heap)
            if key in self.cached and prio == self._priority(key):
                return key
