"""The order of a descending, unstable sort exactly as PyTorch's CPU ``sort`` gives it (libstdc++'s
``std::sort``: introsort with a median-of-three pivot, heapsort past 2·log2(n) levels, and a final insertion
sort over runs of 16), so that EPLB breaks ties among equal loads as DeepSeek's reference does. Only ties
depend on it: without equal values it is the plain descending order.

``tests/test_eplb_golden.py`` checks it against the golden EPLB outputs and PyTorch's order of a long tie.
"""

from __future__ import annotations

import numpy as np

_RUN = 16  # libstdc++'s _S_threshold


def _adjust_heap(v, a, first, hole, length, value):
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if v[a[first + child]] > v[a[first + child - 1]]:
            child -= 1
        a[first + hole] = a[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[first + hole] = a[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and v[a[first + parent]] > v[value]:
        a[first + hole] = a[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    a[first + hole] = value


def _heapsort(v, a, first, last):
    length = last - first
    parent = (length - 2) // 2
    while parent >= 0:
        _adjust_heap(v, a, first, parent, length, a[first + parent])
        parent -= 1
    while last - first > 1:
        last -= 1
        value = a[last]
        a[last] = a[first]
        _adjust_heap(v, a, first, 0, last - first, value)


def _median_to_first(v, a, r, x, y, z):
    ax, ay, az = v[a[x]], v[a[y]], v[a[z]]
    if ax > ay:
        pick = y if ay > az else (z if ax > az else x)
    else:
        pick = x if ax > az else (z if ay > az else y)
    a[r], a[pick] = a[pick], a[r]


def _partition(v, a, first, last, pivot):
    p = v[a[pivot]]
    while True:
        while v[a[first]] > p:
            first += 1
        last -= 1
        while p > v[a[last]]:
            last -= 1
        if not first < last:
            return first
        a[first], a[last] = a[last], a[first]
        first += 1


def _linear_insert(v, a, i):
    val = a[i]
    j = i - 1
    while v[val] > v[a[j]]:
        a[i] = a[j]
        i = j
        j -= 1
    a[i] = val


def _insertion(v, a, first, last):
    for i in range(first + 1, last):
        if v[a[i]] > v[a[first]]:
            val = a[i]
            for j in range(i, first, -1):
                a[j] = a[j - 1]
            a[first] = val
        else:
            _linear_insert(v, a, i)


def _introsort(v, a, n, depth):
    """Sort the indices ``a`` [n] by ``v`` descending, in place. The recursion of the introsort loop is an
    explicit stack (its sub-ranges are disjoint, so the order they are done in does not matter); ``depth``
    is 2·floor(log2 n)."""
    if n < 2:
        return
    stack = [(0, n, depth)]
    while stack:
        first, last, depth = stack.pop()
        while last - first > _RUN:
            if depth == 0:
                _heapsort(v, a, first, last)
                break
            depth -= 1
            _median_to_first(v, a, first, first + 1, first + (last - first) // 2, last - 1)
            cut = _partition(v, a, first + 1, last, first)
            stack.append((cut, last, depth))
            last = cut
    _insertion(v, a, 0, min(n, _RUN))
    for i in range(_RUN, n):
        _linear_insert(v, a, i)


def descending_order(values: np.ndarray) -> np.ndarray:
    """Indices [n] that sort ``values`` [n] descending, ties broken as PyTorch's CPU sort breaks them.
    Without equal values every correct sort gives the same order, so a stable argsort answers; with them
    the introsort above runs on Python lists (a tie-heavy 20,000-value array in about 30 ms; compiling it
    with numba cost more to load per process, about 0.5 s, than it saved on EPLB's sizes)."""
    n = values.size
    if np.unique(values).size == n:
        return np.argsort(-values, kind="stable").astype(np.int64)
    a = list(range(n))
    _introsort(values.tolist(), a, n, 2 * (n.bit_length() - 1))
    return np.asarray(a, dtype=np.int64)
