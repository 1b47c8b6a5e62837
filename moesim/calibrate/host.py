"""Measure the host side of offload on this machine: CPU expert FFNs at decode batches, host memory
bandwidth, and reading a weight file from disk. Writes a host profile (moesim/config/catalog/hosts/NAME.json)
whose figures are labelled ``measured``, with the measurements, the fit and held-out errors.

CPU expert (SwiGLU: gate and up, SiLU·up, down; float32 weights, all cores): time per call
``t = overhead + weight_bytes / B + flops / F``, fitted (non-negative least squares) on the rows of the
``fit`` shapes; the ``held_out`` shapes are predicted and their errors stored (never fitted).
Memory: streaming read of a 512 MiB array (``dram_bandwidth``, the DRAM link's capacity) and a copy
(``host_link_bandwidth``: on a CPU-only box the "GPU" shares this memory, so the profile is ``unified``).
Disk: a 1 GiB file written, flushed and dropped from the page cache (``posix_fadvise(DONTNEED)``), then
read in 8 MiB blocks (``nvme_read_bandwidth``: this machine's disk, whatever it is).

Usage: python -m moesim.calibrate.host [--name cpu-ref] [--dir .] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

FIT = [(2048, 768), (2048, 1408), (4096, 1024)]  # (hidden, expert intermediate): Qwen3-30B, V2-Lite, wide
HELD_OUT = [(2048, 1024), (3072, 1536)]  # OLMoE-like, and one between
BATCHES = [1, 2, 4, 8, 16, 64, 256]  # decode batches, and two larger ones so the FLOP term is identified
OUT = Path(__file__).resolve().parent.parent / "config" / "catalog" / "hosts"


def expert_call(h: int, f: int, n: int, threads: int, stream_bytes: int = 512 * 2**20) -> float:
    """Median seconds of one SwiGLU expert on ``n`` tokens (float32, ``threads`` intra-op threads). Calls
    cycle through distinct experts worth ``stream_bytes`` so that weights come from DRAM, not the caches,
    as they do when a token's experts change."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    copies = max(2, stream_bytes // (3 * h * f * 4))
    ws = [(torch.randn(f, h, generator=g), torch.randn(f, h, generator=g), torch.randn(h, f, generator=g))
          for _ in range(copies)]
    x = torch.randn(n, h, generator=g)
    lin, silu = torch.nn.functional.linear, torch.nn.functional.silu

    def fn(w):
        return lin(silu(lin(x, w[0])) * lin(x, w[1]), w[2])

    for w in ws[:3]:
        fn(w)
    times = []
    for i in range(max(15, copies)):
        t = time.perf_counter()
        fn(ws[i % copies])
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def memory_rates(mib: int = 512, reps: int = 5) -> tuple[float, float]:
    """(read B/s, copy B/s): best of ``reps`` over a ``mib`` MiB float64 array."""
    a = np.ones(mib * 2**20 // 8)
    b = np.empty_like(a)
    read, copy = [], []
    for _ in range(reps):
        t = time.perf_counter()
        a.sum()
        read.append(time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(b, a)
        copy.append(time.perf_counter() - t)
    return a.nbytes / min(read), a.nbytes / min(copy)


def disk_read_rate(folder: Path, mib: int = 1024, reps: int = 3) -> float:
    """Best B/s of reading a ``mib`` MiB file that is not in the page cache."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".moesim-disk-")
    block = os.urandom(8 * 2**20)
    try:
        with os.fdopen(fd, "wb") as fh:
            for _ in range(mib // 8):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        rates = []
        for _ in range(reps):
            with open(name, "rb") as fh:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                t = time.perf_counter()
                while fh.read(8 * 2**20):  # read and drop: only the time counts
                    continue
                rates.append(mib * 2**20 / (time.perf_counter() - t))
        return max(rates)
    finally:
        os.unlink(name)


def _row(h: int, f: int, n: int, threads: int) -> dict:
    return {"hidden": h, "inter": f, "tokens": n, "weight_bytes": 3 * h * f * 4, "flops": 2.0 * 3 * h * f * n,
            "seconds": expert_call(h, f, n, threads)}


def fit(rows: list[dict]) -> tuple[float, float, float, float]:
    """(overhead s, weight B/s, FLOP/s, single-token weight B/s): non-negative least squares on relative
    error over the rows of 2+ tokens (a GEMM); the 1-token rows (a matrix-vector product, another kernel)
    give their own weight rate beside the same overhead."""
    multi = [r for r in rows if r["tokens"] > 1]
    a = np.array([[1.0, r["weight_bytes"], r["flops"]] for r in multi])
    y = np.array([r["seconds"] for r in multi])
    w = 1.0 / y  # relative errors: small calls count as much as large ones
    (c0, inv_b, inv_f), _ = nnls(a * w[:, None], y * w)  # exact non-negative least squares
    one = [r for r in rows if r["tokens"] == 1]
    inv_b1 = float(np.median([max(r["seconds"] - c0 - r["flops"] * inv_f, 1e-9) / r["weight_bytes"] for r in one]))
    return (float(c0), float(1 / inv_b) if inv_b > 0 else float("inf"),
            float(1 / inv_f) if inv_f > 0 else float("inf"), 1 / inv_b1)


def predict(r: dict, c0: float, b: float, f: float, b1: float) -> float:
    return c0 + r["weight_bytes"] / (b1 if r["tokens"] == 1 else b) + r["flops"] / f


def _fig(value, source: str, label: str = "measured") -> dict:
    return {"value": value, "label": label, "source": source}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="cpu-ref")
    ap.add_argument("--dir", default=".", help="folder on the disk to measure (a 1 GiB file is written there)")
    ap.add_argument("--quick", action="store_true", help="fewer rows, a 256 MiB file (a check, not a profile)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    threads = os.cpu_count() or 1
    t0 = time.time()
    shapes = (FIT[:1], HELD_OUT[:1]) if args.quick else (FIT, HELD_OUT)
    fit_rows = [_row(h, f, n, threads) for h, f in shapes[0] for n in BATCHES]
    held = [_row(h, f, n, threads) for h, f in shapes[1] for n in BATCHES]
    c0, wb, fl, wb1 = fit(fit_rows)
    for r in fit_rows + held:
        r["predicted_s"] = predict(r, c0, wb, fl, wb1)
        r["error"] = r["predicted_s"] / r["seconds"] - 1
    read, copy = memory_rates()
    disk = disk_read_rate(Path(args.dir), 256 if args.quick else 1024)
    doc = _document(args, threads, (c0, wb, fl, wb1), (read, copy, disk), fit_rows, held, time.time() - t0)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    errs = [abs(r["error"]) for r in held]
    print(f"wrote {path}: CPU expert overhead {c0 * 1e6:.1f} us, weights {wb / 1e9:.2f} GB/s ({wb1 / 1e9:.2f} at one "
          f"token), {fl / 1e9:.1f} GFLOP/s; "
          f"read {read / 1e9:.2f} GB/s, copy {copy / 1e9:.2f} GB/s, disk {disk / 1e9:.2f} GB/s; held-out "
          f"|error| median {np.median(errs):.1%}, max {max(errs):.1%}")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _document(args, threads, fitted, rates, fit_rows, held, wall) -> dict:
    (c0, wb, fl, wb1), (read, copy, disk) = fitted, rates
    cmd = "python -m moesim.calibrate.host" + (f" --name {args.name}" if args.name != "cpu-ref" else "")
    src = f"moesim/calibrate/host.py on this machine ({_cpu_name()}, {threads} threads), {cmd}"
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    host = {"name": f"{_cpu_name()} ({threads} threads), measured host profile {args.name}",
            "unified": _fig(True, "a CPU-only machine: the 'GPU' ranks (profile cpu-ref) share the host memory"),
            "dram_bytes": _fig(float(mem_total), "os.sysconf physical pages"),
            "dram_bandwidth": _fig(read, f"{src}: streaming read of 512 MiB, best of 5"),
            "host_link": _fig("unified memory", "no host link on a CPU-only machine"),
            "host_link_bandwidth": _fig(copy, f"{src}: np.copyto of 512 MiB, best of 5"),
            "host_link_latency": _fig(0.0, "no host link"),
            "nvme_bytes": _fig(float(shutil.disk_usage(args.dir).total), "shutil.disk_usage"),
            "nvme_read_bandwidth": _fig(disk, f"{src}: 1 GiB file, page cache dropped, 8 MiB reads, best of 3"),
            "nvme_latency": {"value": 1e-4, "label": "estimated", "source": "not measured: order of NVMe latency"},
            "cpu": _fig(_cpu_name(), "/proc/cpuinfo"),
            "cpu_cores": _fig(threads, "os.cpu_count"),
            "cpu_flops": _fig(fl, f"{src}: fitted FLOP/s of float32 SwiGLU experts, batches {BATCHES}"),
            "cpu_gemm_efficiency": _fig(1.0, "cpu_flops is already the fitted effective rate"),
            "cpu_memory_efficiency": _fig(min(1.0, wb / read), f"{src}: fitted weight-streaming rate {wb:.4g} B/s "
                                                              "over the measured read rate"),
            "cpu_gemv_memory_efficiency": _fig(min(1.0, wb1 / read), f"{src}: one-token weight rate {wb1:.4g} B/s "
                                                                    "over the measured read rate"),
            "cpu_expert_overhead": _fig(c0, f"{src}: fitted per-call overhead")}
    return {"format": "moesim-host/1", "name": args.name, "host": host,
            "provenance": {"command": cmd, "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "device_name": _cpu_name(), "threads": threads, "torch": torch.__version__,
                           "python": platform.python_version(), "os": platform.platform(),
                           "grid": {"fit": FIT, "held_out": HELD_OUT, "batches": BATCHES, "dtype": "float32",
                                    "repeats": "15, or one call per distinct expert of a 512 MiB set",
                                    "statistic": "median"}, "quick": args.quick, "wall_s": wall},
            "fit": {"rows": fit_rows, "overhead_s": c0, "weight_Bps": wb, "flops": fl, "single_token_weight_Bps": wb1},
            "held_out": {"rows": held, "median_abs_error": float(np.median([abs(r["error"]) for r in held])),
                         "max_abs_error": float(max(abs(r["error"]) for r in held))}}


if __name__ == "__main__":
    main()
