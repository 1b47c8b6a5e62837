"""The affinity planner's swap loop (``strategies._affinity_nodes``) compiled by numba when it is installed:
the same gains, the same first-maximum choice and the same updates, in the same float operations, so the
same placement; one pass over the E x E candidates per swap instead of a dozen array temporaries.
``tests/test_placement.py`` checks the two agree."""

from __future__ import annotations

import numpy as np

from moesim.util.jit import kernel


def swaps(row, pairs, node, aff, load, cap: float, max_swaps: int) -> None:
    """Run the swaps in place on ``node`` [E], ``aff`` [E, nodes], ``load`` [nodes]."""
    e = row.size
    own = np.empty(e)
    for _ in range(max_swaps):
        for i in range(e):
            own[i] = aff[i, node[i]]
        best, ba, bb = -np.inf, 0, 0
        for a in range(e):
            for b in range(e):
                x, y = node[a], node[b]
                if x == y:
                    continue
                dx = row[b] - row[a]
                if not (load[x] + dx <= cap and load[y] - dx <= cap):
                    continue
                g = (aff[a, y] - own[a]) + (aff[b, x] - own[b]) - 2 * pairs[a, b]
                if g > best:
                    best, ba, bb = g, a, b
        if not best > 1e-9:
            return
        a, b = ba, bb
        x, y = node[a], node[b]
        load[x] += row[b] - row[a]
        load[y] += row[a] - row[b]
        for i in range(e):
            aff[i, x] += pairs[i, b] - pairs[i, a]
            aff[i, y] += pairs[i, a] - pairs[i, b]
        node[a], node[b] = y, x


if kernel is not None:
    swaps = kernel()(swaps)
    available = True
else:  # pragma: no cover
    available = False
