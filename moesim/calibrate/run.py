"""``python -m moesim.calibrate.run``: measure, fit and write a profile. See calibrate/README.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moesim.calibrate import measure as M
from moesim.calibrate.distributed import run_job
from moesim.calibrate.grids import GRIDS
from moesim.calibrate.hostalloc import keep_host_memory
from moesim.hw.costs.measured import FORMAT, Profile, fit_document

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "catalog" / "profiles"


def provenance(device: str, threads: int, grid_name: str, grid: dict[str, Any], argv: list[str],
               dry_run: bool = False) -> dict[str, Any]:
    """Where and how the profile was measured (a dry run: the CUDA path on this host, not a measurement)."""
    host = "cpu" if dry_run else device
    prov = {
        "label": "dry-run (not a measurement)" if dry_run else "measured",
        "dry_run": dry_run,
        "device_kind": device,
        "device_name": f"dry run on {_device_name('cpu')}" if dry_run else _device_name(device),
        "host": platform.node(),
        "os": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "driver": _driver() if host == "cuda" else None,
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "threads": threads,
        "memory_bytes": _mem_total() if host == "cpu" else float(torch.cuda.get_device_properties(0).total_memory),
        "compute_units": os.cpu_count() if host == "cpu"
        else torch.cuda.get_device_properties(0).multi_processor_count,
        "gpus_visible": torch.cuda.device_count() if host == "cuda" else 0,
        "grid_name": grid_name,
        "grid": grid,
        "timing": {"cpu": "torch.utils.benchmark.Timer blocked_autorange, per-call times of each block",
                   "cuda": "CUDA events per repetition, warm-up 5, L2 flushed before each",
                   "noisy_if_spread_over": 0.10, "retries": 2},
        "command": "python -m moesim.calibrate.run " + " ".join(argv),
    }
    return prov


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "cpu"


def _driver() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _mem_total() -> float:
    kib = _proc_field("/proc/meminfo", "MemTotal")  # "NNN kB"
    return float(kib.split()[0]) * 1024 if kib else 0.0


def _proc_field(path: str, key: str) -> str | None:
    """The value after ``key:`` in a /proc file (None where there is no such file or line)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def expert_call_overhead(doc: dict[str, Any]) -> float:
    """Per grouped-call overhead (s): median over loop-method vector points of measured − Σ per-expert."""
    prof = Profile.from_doc(doc)
    resid = []
    for p in doc["expert_vectors"]:
        if p.get("method_name") != "loop" or "median_s" not in p:
            continue
        q = {"hidden": p["hidden"], "inter": p["inter"], "dtype": p["dtype"]}
        pred = sum(prof.time("expert", {**q, "tokens": n}) for n in p["counts"] if n > 0)
        resid.append(p["median_s"] - pred)
    return max(0.0, float(np.median(resid))) if resid else 0.0


def figures(doc: dict[str, Any], device: str) -> dict[str, Any]:
    """Figures the topology and the roofline fallback read, derived from the fits (labelled). A GPU profile
    without an all-to-all fit (one GPU) keeps its catalogue GPU's link figures, labelled as such."""
    pieces = doc["pieces"]
    dtype = doc["default_dtype"]
    coef = {n: dict(zip(b["terms"], b["coef"].get(dtype, next(iter(b["coef"].values()))))) for n, b in pieces.items()}
    src = f"calibrate/ fit on {doc['provenance']['date_utc']}"
    m, e = ("estimated", "estimated") if doc["provenance"].get("dry_run") else ("measured", "estimated")
    flops = 1.0 / coef["expert"]["flops"] if coef["expert"]["flops"] > 0 else 1e12
    fp8 = pieces["expert"]["coef"].get("float8_e4m3fn")
    fp8_flops = {"value": 1.0 / fp8[2], "label": m, "source": f"effective FP8 GEMM rate, expert fit; {src}"} \
        if fp8 and fp8[2] > 0 else {"value": flops, "label": e, "source": "no FP8 GEMM measured: the BF16 rate"}
    elem = {"float32": 4.0, "bfloat16": 2.0}.get(doc["provenance"]["grid"]["dtypes"][0], 2.0)
    mem_bw = 2 * elem / coef["permute"]["c_h"] if coef["permute"]["c_h"] > 0 else 1e11
    return {
        "name": doc["provenance"]["device_name"],
        "peak_bf16_flops": {"value": flops, "label": m, "source": f"effective GEMM rate, expert fit FLOP term; {src}"},
        "peak_fp8_flops": fp8_flops,
        "hbm_bytes": {"value": doc["provenance"]["memory_bytes"], "label": m,
                      "source": "/proc/meminfo MemTotal" if device == "cpu" else "torch device properties"},
        "hbm_bandwidth": {"value": mem_bw, "label": m, "source": f"permute fit byte term (read + write); {src}"},
        "sms": {"value": doc["provenance"]["compute_units"], "label": m,
                "source": "os.cpu_count() / device properties"},
        **_link_figures(doc, coef, m, e, src),
        "gemm_efficiency": {"value": 1.0, "label": e, "source": "the peaks above are already effective rates"},
        "memory_efficiency": {"value": 1.0, "label": e, "source": "the bandwidth above is already effective"},
        "kernel_overhead": {"value": coef["expert"]["one"], "label": m, "source": f"expert fit constant; {src}"},
        "tile_rows": {"value": 64 if device == "cuda" else 1, "label": e,
                      "source": "Hopper grouped GEMM tile height (64 or 128 rows)" if device == "cuda"
                      else "CPU GEMMs do not pad rows to a tile"},
    }


def _link_figures(doc: dict[str, Any], coef: dict[str, Any], m: str, e: str, src: str) -> dict[str, Any]:
    """NVLink/NIC figures: from the all-to-all fit, else the catalogue GPU whose name the device has."""
    if "all_to_all" in coef:
        a2a = coef["all_to_all"]
        link_bw = 1.0 / a2a["bytes"] if a2a["bytes"] > 0 else 1e11
        kind = doc["provenance"]["device_kind"]
        return {
            "nvlink_bandwidth": {"value": link_bw, "label": m, "source": f"all_to_all_single fit, {kind} ranks; {src}"},
            "collective_latency": {"value": a2a["one"], "label": m, "source": f"all_to_all_single fit constant; {src}"},
            "nvlink_latency": {"value": 0.0, "label": e, "source": "folded into collective_latency by the fit"},
            "nic_bandwidth": {"value": link_bw, "label": e,
                              "source": "not measured (one host): the intra-host all-to-all figure is reused"},
            "nic_latency": {"value": 0.0, "label": e, "source": "not measured (one host)"},
        }
    from moesim.config import catalog
    name = doc["provenance"]["device_name"].lower()
    match = next((g for g in ("h200", "h100", "h800", "b200") if g in name), "h100")
    entry = catalog.gpu_entry(match)
    why = doc["provenance"].get("all_to_all", "not measured")
    return {k: {**entry[k], "source": f"catalogue {match} ({why}): {entry[k].get('source', '')}"}
            for k in ("nvlink_bandwidth", "collective_latency", "nvlink_latency", "nic_bandwidth", "nic_latency")}


def calibrate(name: str, grid_name: str, device: str, threads: int, argv: list[str],
              log=print, dry_run: bool = False) -> dict[str, Any]:
    """Measure everything on the grid and return the fitted profile document."""
    grid = GRIDS[grid_name]
    allocator = keep_host_memory() if device == "cpu" or dry_run else "CUDA caching allocator"
    t0 = time.perf_counter()
    bench = M.Bench(device, threads, min_run_s={"smoke": 0.002, "quick": 0.02}.get(grid_name, 0.1),
                    progress=lambda msg: log(f"[{time.perf_counter() - t0:6.1f} s] {msg}"), dry_run=dry_run,
                    reps=grid.get("reps", 30))
    torch.manual_seed(0)
    perm, unperm = M.permute_points(bench, grid)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "provenance": {**provenance(device, threads, grid_name, grid, argv, dry_run), "host_allocator": allocator},
        "default_dtype": grid["dtypes"][0],
        "pieces": {
            "router": {"points": M.router_points(bench, grid)},
            "permute": {"points": perm},
            "expert": {"points": M.expert_points(bench, grid)},
            "unpermute": {"points": unperm},
        },
        "expert_vectors": M.vector_points(bench, grid),
    }
    a2a = grid["all_to_all"]
    pre, dec = M.attention_points(bench, grid)
    doc["pieces"]["attn_prefill"], doc["pieces"]["attn_decode"] = {"points": pre}, {"points": dec}
    reps = 5 if grid_name.endswith("smoke") else 20
    skip = _no_all_to_all(device, dry_run)
    if skip:
        doc["provenance"]["all_to_all"] = f"not measured: {skip}"
        log(f"[{time.perf_counter() - t0:6.1f} s] all_to_all skipped: {skip}")
    else:
        doc["pieces"]["all_to_all"] = {"points": run_job("all_to_all", {**a2a, "reps": reps, "threads": threads},
                                                         backend="nccl" if device == "cuda" else "gloo")}
        log(f"[{time.perf_counter() - t0:6.1f} s] all_to_all (2 processes)")
    doc["provenance"]["wall_s"] = round(time.perf_counter() - t0, 1)
    return finish(doc)


def _no_all_to_all(device: str, dry_run: bool) -> str | None:
    """Why all-to-all cannot be measured here (None: it can)."""
    if device != "cuda":
        return None
    if dry_run:
        return "dry run (NCCL needs GPUs)"
    if torch.cuda.device_count() < 2:
        return "one GPU (NCCL refuses two ranks on one GPU; the catalogue's link figures stand)"
    return None


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """Fit every piece from its points, then the call overhead, method summary and derived figures.
    Deterministic: ``python -m moesim.calibrate.run --refit PROFILE`` redoes exactly this from stored points."""
    doc = fit_document(doc)
    doc["expert_call_s"] = expert_call_overhead(doc)
    doc["expert_methods"] = _methods_summary(doc["expert_vectors"])
    doc["gpu"] = figures(doc, doc["provenance"]["device_kind"])
    return doc


def _methods_summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """How often each expert-GEMM method was fastest, and which one the profile's expert fit times."""
    by_case: dict[str, dict[str, float]] = {}
    for p in points:
        if "median_s" in p:
            by_case.setdefault(json.dumps(p["counts"]), {})[p["method_name"]] = p["median_s"]
    wins: dict[str, int] = {}
    for times in by_case.values():
        best = min(times, key=times.get)
        wins[best] = wins.get(best, 0) + 1
    errors = sorted({f"{p['method_name']}: {p['error']}" for p in points if "error" in p})
    return {"timed_by_the_fit": "loop", "fastest_count": wins, "cases": len(by_case), "unavailable": errors}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m moesim.calibrate.run", description=__doc__)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="quick",
                    help="smoke: seconds, format check only; quick: < 1 min; full: < 15 min (CPU)")
    ap.add_argument("--name", default=None, help="profile name (default: cpu-<grid> or cuda-<grid>)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads per process (default 1)")
    ap.add_argument("--dry-run", action="store_true",
                    help="with --device cuda: run the GPU code path on this host's CPU (checks it before a GPU "
                         "is lent; its times are not GPU measurements and the profile says so)")
    ap.add_argument("-o", "--out", type=Path, default=None, help=f"output file (default {PROFILE_DIR}/NAME.json)")
    ap.add_argument("--refit", type=Path, default=None, metavar="PROFILE",
                    help="refit a stored profile from its measured points (no timing) and rewrite it")
    ap.add_argument("--add-attention", type=Path, default=None, metavar="PROFILE",
                    help="measure the attention pieces of --grid on this machine and add them to PROFILE")
    a = ap.parse_args(argv)
    name = a.name or f"{a.device}-{a.grid}" + ("-dryrun" if a.dry_run else "")
    if a.add_attention:
        doc = json.loads(a.add_attention.read_text())
        allocator = keep_host_memory() if a.device == "cpu" else "CUDA caching allocator"
        bench = M.Bench(a.device, a.threads, min_run_s=0.1, progress=print)
        pre, dec = M.attention_points(bench, GRIDS[a.grid])
        doc["pieces"]["attn_prefill"], doc["pieces"]["attn_decode"] = {"points": pre}, {"points": dec}
        doc["provenance"]["attention"] = {"date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                          "grid": GRIDS[a.grid]["attention"], "host_allocator": allocator,
                                          "command": "python -m moesim.calibrate.run " + " ".join(argv),
                                          "host": platform.node(), "torch": torch.__version__}
        doc = finish(doc)
        out = a.out or a.add_attention
    elif a.refit:
        doc = finish(json.loads(a.refit.read_text()))
        out = a.out or a.refit
    else:
        doc = calibrate(name, a.grid, a.device, a.threads, argv, dry_run=a.dry_run)
        out = a.out or PROFILE_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    for piece, body in doc["pieces"].items():
        err = body["fit_error_percent"]
        par, loo = err["parametric"].get("mape", 0), err["interpolation_leave_one_out"].get("mape", float("nan"))
        print(f"{piece:11s} points {len(body['points']):4d}  parametric MAPE {par:5.1f}%"
              f"  interpolation (leave-one-out) MAPE {loo:5.1f}%")
    print(f"wrote {out} in {doc['provenance']['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
