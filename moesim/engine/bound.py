"""The closed-form floor: a bulk-synchronous bottleneck evaluation of the same programs, numpy only.

Every stage starts on every GPU when the slowest GPU has finished the stage before it (a barrier per
stage). A compute stage then takes each GPU its own seconds; a communication stage takes everybody its
start-up latency, plus the busiest link's bytes over its capacity (every flow of the stage on the link at
once), plus the longest path latency. No events, no flow order, no overlap between GPUs at different
stages: the cheapest evaluation of the traffic matrices the engine also runs, and a first-pass estimate
(its error against the engines is measured in docs/performance.md).
"""

from __future__ import annotations

import numpy as np

from moesim.engine.lockstep import stage_ops
from moesim.engine.records import SimRecords
from moesim.hw.topology import Topology
from moesim.ir.program import Comm, Program


def simulate_bound(programs: list[list[Program]], topo: Topology) -> SimRecords:
    """Records of the bulk-synchronous evaluation of one micro-batch's programs (``lockstep.supports``)."""
    progs = programs[0]
    g = topo.num_gpus
    width = max((len(p.leaves) for p in progs), default=0)
    times = np.full((1, len(progs), g, width, 3), np.nan)
    now = 0.0
    for p, prog in enumerate(progs):
        rec = times[0, p]
        for op in stage_ops(prog):
            if op[0] == "m":
                rec[:, op[1], :2] = now
                now += phase_seconds(op[2], topo)
                rec[:, op[1], 2] = now
                continue
            for s, sec in zip(op[1], op[2]):
                rec[:, s, :2] = now
                rec[:, s, 2] = now + sec
                now += float(sec.max()) if sec.size else 0.0
    kinds = tuple(tuple("comm" if isinstance(s, Comm) else "compute" for s in p.leaves) for p in progs)
    return SimRecords(times, tuple(p.names for p in progs), kinds, 0, engine="bound")


def phase_seconds(st: Comm, topo: Topology) -> float:
    """Start-up latency + the busiest link's bytes / capacity + the longest path's latency (seconds)."""
    f = st.flows
    if f.size == 0:
        return st.latency_s
    nbytes = f.nbytes
    if st.nvlink_scale != 1.0:
        gpn = topo.gpus_per_node
        nbytes = np.where(f.intra_node(gpn), nbytes * st.nvlink_scale, nbytes)
    paths = topo.flow_paths(f)
    valid = paths >= 0
    links = paths[valid]
    load = np.bincount(links, weights=np.broadcast_to(nbytes[:, None], paths.shape)[valid],
                       minlength=topo.capacity_Bps.size)
    wire = float((load / topo.capacity_Bps).max()) if links.size else 0.0
    lat = np.where(valid, topo.latency_s[np.where(valid, paths, 0)], 0.0).sum(axis=1)
    return st.latency_s + wire + float(lat.max())
