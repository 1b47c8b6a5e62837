"""``drain.drain_batches`` in one compiled pass when numba is installed: the same sums in the same order,
so the same finish times bit for bit (``tests/test_lockstep.py``). The numpy version makes a dozen passes
over [F, P] arrays per phase (and, for sparse phases, a radix sort of the cell keys); this reads the paths
a few times and goes batch by batch. Both choose the dense or the sparse scan by the same test and do the
same float operations: bytes per (link, batch) cell accumulated entry by entry in flow order
(``np.bincount``), then per link a running sum of its cells' drain times, left to right, and a running
maximum (exact).
"""

from __future__ import annotations

import numpy as np

from moesim.util.jit import kernel


def available() -> bool:
    return kernel is not None


def drain(paths: np.ndarray, nbytes: np.ndarray, release: np.ndarray, batch_of: np.ndarray,
          batch_times: np.ndarray, capacity: np.ndarray, latency: np.ndarray, link_free: np.ndarray) -> np.ndarray:
    """Finish time [F] of every flow; arguments as ``drain.drain_batches`` (``link_free`` updated in place)."""
    c = np.ascontiguousarray  # no copy when the array is already as needed
    return _drain(c(paths), c(nbytes, dtype=np.float64), c(release, dtype=np.float64), c(batch_of, dtype=np.int64),
                  c(batch_times, dtype=np.float64), capacity, latency, link_free)


def _drain(paths, nbytes, release, batch_of, batch_times, capacity, latency, link_free):
    n_f, n_p = paths.shape
    n_l, n_r = capacity.size, batch_times.size
    row = np.full(n_l, -1, dtype=np.int64)
    for i in range(n_f):
        for j in range(n_p):
            if paths[i, j] >= 0:
                row[paths[i, j]] = 0
    n_t = 0
    for link in range(n_l):  # rows in ascending link id, as np.flatnonzero orders the touched links
        if row[link] == 0:
            row[link] = n_t
            n_t += 1
    out = release.copy()
    if n_t == 0:
        return out
    order = _counting_sort(np.arange(n_f), batch_of, n_r)  # flows batch by batch, in flow order inside one
    sparse = n_t * n_r > 4 * paths.size
    if sparse:
        f, of_entry = _sparse(paths, nbytes, batch_of, batch_times, capacity, link_free, row, n_t, order)
    else:
        f, of_entry = _dense(paths, nbytes, batch_of, batch_times, capacity, link_free, row, n_t, order), paths
    for i in range(n_f):
        best, lat = -np.inf, 0.0
        for j in range(n_p):
            link = paths[i, j]
            if link >= 0:  # the entry's cell: its own in the sparse scan, (batch, link row) in the dense one
                best = max(best, f[of_entry[i, j]] if sparse else f[batch_of[i] * n_t + row[link]])
            lat = lat + (latency[link] if link >= 0 else 0.0)  # numpy's row sum: left to right
        out[i] = max(best, release[i]) + lat
    return out


def _dense(paths, nbytes, batch_of, batch_times, capacity, link_free, row, n_t, order):
    """``drain._dense_scan``: f per cell [R · T], [batch, link row] flattened. Cells are laid out [batch, link
    row] and filled batch by batch (one row of cells at a time), and the scan runs batch by batch with
    each link's running sum and maximum carried along."""
    n_f, n_p = paths.shape
    n_r = batch_times.size
    d = np.zeros((n_r, n_t))
    for i in order:
        for j in range(n_p):
            if paths[i, j] >= 0:
                d[batch_of[i], row[paths[i, j]]] += nbytes[i]
    links = np.empty(n_t, dtype=np.int64)
    for link in range(capacity.size):
        if row[link] >= 0:
            links[row[link]] = link
    p, acc = np.zeros(n_t), np.full(n_t, -np.inf)
    for b in range(n_r):
        for r in range(n_t):
            link = links[r]
            db = d[b, r] / capacity[link]
            p[r] = p[r] + db
            m = batch_times[b] - (p[r] - db)
            acc[r] = m if b == 0 or m > acc[r] else acc[r]
            d[b, r] = p[r] + max(acc[r], link_free[link])  # d now holds f
    for r in range(n_t):
        link_free[links[r]] = d[n_r - 1, r]
    return d.ravel()  # f per cell, [batch · n_t + link row]


def _sparse(paths, nbytes, batch_of, batch_times, capacity, link_free, row, n_t, order):
    """``drain._sparse_scan``: the loaded cells only, batch by batch in time order (a batch's cells are
    summed, then each carries its link's running sum and maximum on); no sort of the cells."""
    n_f, n_p = paths.shape
    n_r = batch_times.size
    links = np.empty(n_t, dtype=np.int64)
    for link in range(capacity.size):
        if row[link] >= 0:
            links[row[link]] = link
    run, acc, last = np.zeros(n_t), np.full(n_t, -np.inf), np.empty(n_t)
    slot, c_row, c_sum = np.full(n_t, -1, dtype=np.int64), np.empty(n_t, dtype=np.int64), np.zeros(n_t)
    f_cell, of_entry = np.empty(n_f * n_p), np.empty((n_f, n_p), dtype=np.int64)
    n_c, q = 0, 0
    while q < n_f:
        b, first = batch_of[order[q]], n_c
        while q < n_f and batch_of[order[q]] == b:
            i = order[q]
            for j in range(n_p):
                if paths[i, j] >= 0:
                    r = row[paths[i, j]]
                    if slot[r] < 0:
                        slot[r], c_row[n_c - first], c_sum[n_c - first] = n_c - first, r, 0.0
                        n_c += 1
                    c_sum[slot[r]] += nbytes[i]
                    of_entry[i, j] = first + slot[r]
            q += 1
        for c in range(n_c - first):
            r = c_row[c]
            link = links[r]
            d = c_sum[c] / capacity[link]
            run[r] = run[r] + d
            acc[r] = max(acc[r], batch_times[b] - (run[r] - d))
            f_cell[first + c] = last[r] = run[r] + max(acc[r], link_free[link])
            slot[r] = -1
    for r in range(n_t):
        link_free[links[r]] = max(last[r], batch_times[n_r - 1])
    return f_cell, of_entry  # f per cell, each path entry's cell


def _counting_sort(items, keys, n_keys):
    """``items`` reordered by ``keys`` [len(items)] (0 <= key < n_keys), stably."""
    count = np.zeros(n_keys + 1, dtype=np.int64)
    for k in keys:
        count[k + 1] += 1
    for k in range(n_keys):
        count[k + 1] += count[k]
    out = np.empty_like(items)
    for q in range(items.size):
        out[count[keys[q]]] = items[q]
        count[keys[q]] += 1
    return out


def maximum_at(target: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``np.maximum.at(target, idx, vals)`` (max is exact: any order gives the same result); numpy's ``at``
    costs about 20 ns an element, a compiled loop 1-2."""
    if kernel is None:
        np.maximum.at(target, idx, vals)
    else:
        _maximum_at(target, np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(vals, dtype=np.float64))


def _maximum_at(target, idx, vals):
    for q in range(idx.size):
        if vals[q] > target[idx[q]] or np.isnan(vals[q]):
            target[idx[q]] = vals[q]


if kernel is not None:
    _maximum_at = kernel()(_maximum_at)
    _jit = kernel()
    _counting_sort, _dense, _sparse, _drain = _jit(_counting_sort), _jit(_dense), _jit(_sparse), _jit(_drain)
