"""The SimPy model: one process per GPU walking through every MoE layer.

Per layer and GPU: route (router, top-k, permute) → dispatch all-to-all → experts (routed + shared) →
combine all-to-all → unpermute. A GPU enters an all-to-all as soon as it is ready; it leaves when its own
inbound and outbound data have moved, so a hot GPU delays exactly those that exchange data with it.
Events at equal times run in SimPy's (time, priority, insertion id) order, so runs are deterministic.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from moesim.engine.fluid import FluidNetwork
from moesim.engine.phase import CommPhase
from moesim.engine.records import COMBINED, COMPUTED, DISPATCHED, END, ROUTED, START, LayerWork, SimRecords
from moesim.topology import Topology


def simulate(work: list[LayerWork], topo: Topology, base_latency_s: float, exact: bool = True,
             dispatch_latency_s: float | None = None) -> SimRecords:
    """Run all layers on all GPUs. ``exact``: max-min flow sharing (else the scalable drain model).
    base_latency_s: a collective's start-up latency; dispatch_latency_s: dispatch's (default the same)."""
    return _run([work], topo, base_latency_s, exact, dispatch_latency_s, share_gpu=False)[0]


def simulate_overlap(works: list[list[LayerWork]], topo: Topology, base_latency_s: float, exact: bool = True,
                     dispatch_latency_s: float | None = None) -> list[SimRecords]:
    """Micro-batches interleaved on every GPU (DeepSeek's and SGLang's two-batch overlap): each micro-batch is
    its own process; compute stages hold the GPU (one at a time, first come first served), all-to-alls do
    not, so one micro-batch computes while another's dispatch or combine is in flight. Micro-batch 0 starts
    first. With the exact network, concurrent phases share links; with the drain model each phase drains
    on its own. Returns one SimRecords per micro-batch."""
    return _run(works, topo, base_latency_s, exact, dispatch_latency_s, share_gpu=True)


def _run(works: list[list[LayerWork]], topo: Topology, base_latency_s: float, exact: bool,
         dispatch_latency_s: float | None, share_gpu: bool) -> list[SimRecords]:
    """One process per (GPU, micro-batch). ``share_gpu``: compute stages queue for a per-GPU resource
    (needed only when several micro-batches share a GPU; a lone process never waits for it)."""
    env = simpy.Environment()
    g = topo.num_gpus
    net = FluidNetwork(env, topo.capacity_Bps, topo.latency_s) if exact else None
    d_lat = base_latency_s if dispatch_latency_s is None else dispatch_latency_s

    def phase(flows, latency) -> CommPhase | None:
        if flows is None:
            return None
        return CommPhase(env, flows, topo.paths(flows.src, flows.dst), g, topo.gpus_per_node,
                         latency, net, topo.capacity_Bps, topo.latency_s)

    gpus = [simpy.Resource(env, capacity=1) if share_gpu else None for _ in range(g)]
    times = [np.zeros((len(w), g, 6)) for w in works]
    phases = [[(phase(w.dispatch, d_lat), phase(w.combine, base_latency_s), phase(w.pre_comm, base_latency_s))
               for w in work] for work in works]
    for gpu in range(g):
        for mb, work in enumerate(works):
            env.process(_gpu(env, gpu, work, phases[mb], times[mb], gpus[gpu]))
    env.run()
    return [SimRecords(t, net.recomputes if net else 0) for t in times]


def _compute(env: simpy.Environment, res: simpy.Resource | None,
             seconds: float) -> Generator[simpy.Event, None, None]:
    if res is None:
        yield env.timeout(seconds)
        return
    with res.request() as req:
        yield req
        yield env.timeout(seconds)


def _gpu(env: simpy.Environment, gpu: int, work: list[LayerWork], phases: list[tuple[CommPhase | None, ...]],
         times: np.ndarray, res: simpy.Resource | None) -> Generator[simpy.Event, None, None]:
    for layer, (w, (dispatch, combine, pre)) in enumerate(zip(work, phases)):
        t = times[layer, gpu]
        t[START] = env.now
        if pre is not None:  # tensor-parallel attention, then its all-reduce over the network model
            yield from _compute(env, res, w.pre_s[gpu])
            yield pre.join(gpu)
        yield from _compute(env, res, w.route_s[gpu])
        t[ROUTED] = env.now
        arrived = dispatch.join(gpu)
        if w.during_dispatch_s is not None and w.during_dispatch_s[gpu] > 0:
            arrived = env.all_of([arrived, env.timeout(w.during_dispatch_s[gpu])])  # both must finish
        yield arrived
        t[DISPATCHED] = env.now
        yield from _compute(env, res, w.expert_s[gpu])
        t[COMPUTED] = env.now
        yield combine.join(gpu)
        t[COMBINED] = env.now
        yield from _compute(env, res, w.unpermute_s[gpu])
        t[END] = env.now
