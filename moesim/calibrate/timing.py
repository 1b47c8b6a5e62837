"""Timing that reports a distribution, not one number.

CPU: ``torch.utils.benchmark.Timer`` with an explicit thread count (it sets and restores
``torch.set_num_threads``), blocks sized by ``blocked_autorange``; every block gives one per-call time.
GPU: CUDA events around every repetition, after warm-up, with the L2 cache flushed before each one (a
buffer larger than L2 is overwritten), so weights are re-read from HBM as in a real layer.
A point whose spread (p80 − p20) / median exceeds ``NOISY`` is measured again, up to ``RETRIES`` times,
keeping the tightest; how many retries it took is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.utils.benchmark as tb

NOISY = 0.10
RETRIES = 2


def _summary(times: list[float], method: str) -> dict[str, Any]:
    t = np.asarray(times)
    return {"median_s": float(np.median(t)), "p20_s": float(np.percentile(t, 20)),
            "p80_s": float(np.percentile(t, 80)), "n": int(t.size), "method": method}


def _spread(s: dict[str, Any]) -> float:
    return (s["p80_s"] - s["p20_s"]) / s["median_s"] if s["median_s"] > 0 else 0.0


def time_cpu(fn: Callable[[], Any], threads: int, min_run_s: float) -> dict[str, Any]:
    """Per-call times of ``fn`` on CPU with ``threads`` intra-op threads."""
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_s)
    times = [t / m.number_per_run for t in m.raw_times]
    if len(times) < 5:  # blocked_autorange may return few long blocks: take single calls instead
        m = timer.timeit(1)
        times = [m.raw_times[0]] + [timer.timeit(1).raw_times[0] for _ in range(6)]
    return _summary(times, f"torch.utils.benchmark.Timer(num_threads={threads})")


class _HostEvent:
    """``torch.cuda.Event``'s timing interface on the host clock: the dry run's stand-in."""

    def __init__(self, enable_timing: bool = True) -> None:
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: _HostEvent) -> float:
        return (end.t - self.t) * 1e3  # milliseconds, as CUDA events report


class _Cuda:
    """What ``time_cuda`` needs from ``torch.cuda``: the real module, or host stand-ins for a dry run
    (``--device cuda --dry-run``: the GPU code path executed on the CPU, so it is checked before a GPU
    is lent; its times are CPU times and are never a GPU measurement)."""

    def __init__(self, dry: bool) -> None:
        self.dry = dry
        self.device = "cpu" if dry else "cuda"
        self.Event = _HostEvent if dry else torch.cuda.Event
        self.synchronize = (lambda: None) if dry else torch.cuda.synchronize
        self.l2_bytes = 1 << 20 if dry else torch.cuda.get_device_properties(0).L2_cache_size


def time_cuda(fn: Callable[[], Any], reps: int, warmup: int = 5, dry: bool = False) -> dict[str, Any]:
    """Per-repetition CUDA-event times of ``fn`` with an L2 flush before each repetition."""
    cuda = _Cuda(dry)
    flush = torch.empty(max(2 * cuda.l2_bytes, 1 << 20), dtype=torch.uint8, device=cuda.device)
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    starts = [cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends):
        flush.zero_()
        s.record()
        fn()
        e.record()
        if dry:
            cuda.synchronize()
    cuda.synchronize()
    method = "host clock around the CUDA path (dry run, not a GPU time)" if dry else "cuda events, L2 flushed"
    return _summary([s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)], method)


def measure(fn: Callable[[], Any], device: str, threads: int = 1, min_run_s: float = 0.05,
            reps: int = 30, dry: bool = False) -> dict[str, Any]:
    """Time ``fn``; re-measure while noisy. Returns median/p20/p80 (s), n, method, retries.
    ``device``: the timing path (``cuda`` or ``cpu``); ``dry``: the CUDA path on the host."""
    def once() -> dict[str, Any]:
        return time_cuda(fn, reps, dry=dry) if device == "cuda" else time_cpu(fn, threads, min_run_s)

    best = once()
    retries = 0
    while _spread(best) > NOISY and retries < RETRIES:
        retries += 1
        again = once()
        if _spread(again) < _spread(best):
            best = again
    return {**best, "retries": retries}
