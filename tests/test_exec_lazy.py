"""The local pool takes items as workers free up: a caller's generator can leave out items that earlier
results made unnecessary, and every item it did yield gets its result."""

from __future__ import annotations

import pytest

from moesim.exec import LocalProcessExecutor, SerialExecutor


def square(x: int) -> int:
    return x * x


def items(seen: list[int], handed: list[int]):
    for i in range(100):
        if len(seen) >= 5:  # enough results: the rest are left out
            return
        handed.append(i)
        yield i


@pytest.mark.parametrize("executor", [LocalProcessExecutor(2), SerialExecutor()], ids=["pool", "serial"])
def test_items_come_from_the_generator_as_results_arrive(executor):
    seen, handed = [], []
    for item, res in executor.run(square, items(seen, handed)):
        assert res == item * item
        seen.append(item)
    assert sorted(seen) == handed and 5 <= len(handed) <= 5 + 2  # at most a worker's worth beyond
