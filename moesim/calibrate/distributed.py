"""Two-process measurements with torch.distributed: all-to-all with uneven splits, and a real
expert-parallel MoE layer (dispatch → local experts → combine). gloo on CPU, NCCL on GPUs.

Each job runs in ``world`` fresh processes (``torch.multiprocessing`` spawn); rank 0 writes the results
to a JSON file the parent reads. Times are per repetition, the slowest rank's (all-reduce MAX), after a
barrier, so every repetition measures the collective as a whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from moesim.calibrate import pieces as P
from moesim.calibrate.hostalloc import keep_host_memory


def run_job(job: str, spec: dict[str, Any], world: int = 2, backend: str = "gloo") -> Any:
    """Run ``job`` ('all_to_all' or 'ep_layer') with ``spec`` on ``world`` local processes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        init = f"file://{Path(tmp) / 'rendezvous'}"
        mp.start_processes(_worker, args=(world, backend, init, job, spec, str(out)), nprocs=world,
                           join=True, start_method="spawn")
        return json.loads(out.read_text())


def _worker(rank: int, world: int, backend: str, init: str, job: str, spec: dict[str, Any], out: str) -> None:
    keep_host_memory()
    torch.set_num_threads(spec.get("threads", 1))
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    device = "cuda" if backend == "nccl" else "cpu"
    if device == "cuda":
        torch.cuda.set_device(rank)
    try:
        result = {"all_to_all": _a2a_job, "ep_layer": _ep_job}[job](rank, world, spec, device)
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _timed(fn, reps: int, warmup: int, device: str) -> list[float]:
    """Slowest-rank time of each repetition."""
    times = []
    for r in range(warmup + reps):
        dist.barrier()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        t = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if r >= warmup:
            times.append(float(t))
    return times


def _summary(times: list[float], method: str) -> dict[str, Any]:
    t = np.asarray(times)
    return {"median_s": float(np.median(t)), "p20_s": float(np.percentile(t, 20)),
            "p80_s": float(np.percentile(t, 80)), "n": int(t.size), "method": method}


def a2a_splits(nbytes: int, world: int, uneven: bool) -> list[list[int]]:
    """Bytes each rank sends to each rank [src][dst]: even, or rank r sending 3/4 of its bytes to rank r+1."""
    if not uneven:
        return [[nbytes // world] * world for _ in range(world)]
    rows = []
    for r in range(world):
        row = [nbytes // (4 * (world - 1))] * world
        row[(r + 1) % world] = nbytes - sum(row) + row[(r + 1) % world]
        rows.append(row)
    return rows


def _a2a_job(rank: int, world: int, spec: dict[str, Any], device: str) -> list[dict[str, Any]]:
    points = []
    for nbytes in spec["bytes"]:
        for uneven in spec["uneven"]:
            m = a2a_splits(nbytes, world, uneven)
            send = m[rank]
            recv = [m[s][rank] for s in range(world)]
            inp = torch.zeros(sum(send), dtype=torch.uint8, device=device)
            outp = torch.empty(sum(recv), dtype=torch.uint8, device=device)
            times = _timed(lambda o=outp, i=inp, r=recv, s=send: dist.all_to_all_single(o, i, r, s),
                           spec["reps"], 3, device)
            remote = max(max(sum(row) - row[s] for s, row in enumerate(m)),
                         max(sum(m[s][d] for s in range(world) if s != d) for d in range(world)))
            points.append({"bytes": remote, "bytes_per_rank": nbytes, "uneven": uneven, "world": world,
                           "splits": m, **_summary(times, f"all_to_all_single, {dist.get_backend()}, "
                                                         f"slowest rank, barrier before each")})
    return points


def _ep_job(rank: int, world: int, spec: dict[str, Any], device: str) -> dict[str, Any]:
    """An expert-parallel MoE layer: every rank routes its tokens, sends copies to the experts' ranks,
    runs its local experts, sends results back and combines. Returns times and every rank's routing."""
    t, h, i, e, k = spec["tokens"], spec["hidden"], spec["inter"], spec["experts"], spec["top_k"]
    el = e // world
    g = torch.Generator().manual_seed(spec["seed"])
    w_router = torch.randn(e, h, generator=g).to(device)
    bias = torch.tensor(spec.get("logit_bias", [0.0] * e), dtype=torch.float32, device=device)
    ws = P.expert_weights(el, h, i, torch.float32, device, seed=spec["seed"] + 1 + rank)
    x = torch.randn(t, h, generator=torch.Generator().manual_seed(spec["seed"] + 100 + rank)).to(device)

    stages: list[list[float]] = []

    def layer():
        marks = [time.perf_counter()]
        weights, ids = _biased_router(x, w_router, bias, k)
        xs, order, counts = P.permute(x, ids, e)
        marks.append(time.perf_counter())
        send = counts.view(world, el).sum(1)
        recv_counts = torch.empty(world * el, dtype=counts.dtype, device=device)
        dist.all_to_all_single(recv_counts, counts)  # each rank learns how many copies per local expert
        rc = recv_counts.view(world, el)
        recv = rc.sum(1)
        xr = torch.empty(int(recv.sum()), h, device=device)
        dist.all_to_all_single(xr, xs, recv.tolist(), send.tolist())
        marks.append(time.perf_counter())
        # received rows are grouped by source, then expert: regroup by expert for the local experts
        src_expert = torch.repeat_interleave(torch.arange(world * el, device=device) % el, rc.reshape(-1))
        reg = torch.argsort(src_expert, stable=True)
        ys = P.experts_loop(xr.index_select(0, reg), rc.sum(0).tolist(), *ws)
        back = torch.empty_like(ys).index_copy_(0, reg, ys)
        marks.append(time.perf_counter())
        yr = torch.empty(xs.shape[0], h, device=device)
        dist.all_to_all_single(yr, back, send.tolist(), recv.tolist())
        marks.append(time.perf_counter())
        out = P.unpermute(yr, order, weights, t)
        marks.append(time.perf_counter())
        stages.append(np.diff(marks).tolist())
        return out, ids

    _, ids = layer()
    all_ids = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(all_ids, ids)
    stages.clear()
    times = _timed(layer, spec["reps"], 2, device)
    # per stage: this rank's median over the timed repetitions, then the slowest rank's
    med = torch.tensor(np.median(np.array(stages[-spec["reps"]:]), axis=0), dtype=torch.float64)
    dist.all_reduce(med, op=dist.ReduceOp.MAX)
    names = ["route_permute", "dispatch", "experts", "combine", "unpermute"]
    return {"spec": spec, "ids": [a.tolist() for a in all_ids], "stages_s": dict(zip(names, med.tolist())),
            **_summary(times, "EP layer, slowest rank")}


def _biased_router(x, w, bias, k):
    """Softmax router whose logits carry a per-expert bias: a skewed but real router."""
    logits = x @ w.t() + bias
    scores = torch.softmax(logits, dim=-1)
    ids = scores.topk(k, dim=-1).indices
    weights = scores.gather(1, ids)
    return weights / weights.sum(-1, keepdim=True), ids


def free_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)
