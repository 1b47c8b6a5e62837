"""glibc's allocator, tuned for the engine's large short-lived arrays (Linux with glibc only).

A 10,000-GPU run allocates and frees arrays of tens of MB per phase. By default glibc serves every
allocation over 128 KiB (its threshold adapts up to 32 MiB) with a fresh ``mmap`` and returns it on free,
so every phase faults its pages in again: 2.9 million page faults and 12.7 s of system time for the
10,000-GPU bench case and its closed-form floor (``/usr/bin/time -v python bench/bench_scale.py 10k``).
Serving allocations up to 32 MiB from the heap and keeping up to 1 GiB of freed memory for reuse cut that to
0.8 million and 7.6 s (docs/performance.md). Set ``MOESIM_MALLOC=default`` to leave the allocator alone.

Only the processes moesim owns call ``tune``: the CLI (``moesim.cli.main``), the executors' worker processes and
the benchmarks. Library calls never change the caller's process (a notebook's allocator is its own).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's malloc.h
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))


def tune() -> bool:
    """Apply ``SETTINGS`` with ``mallopt``; False where that is not possible (not glibc) or opted out."""
    if os.environ.get("MOESIM_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
