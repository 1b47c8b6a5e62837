"""Before a run: how much memory and time it will take, from the scenario's size alone, and a refusal
when the memory estimate exceeds what this machine has (``sim.size_guard: false`` overrides it).

The estimate counts what dominates at scale: the flows every layer's dispatch and combine hold from build
to engine (one per (source GPU, destination GPU) pair that exchanges tokens, or fewer when each GPU routes
only a few sampled tokens, for every micro-batch and accumulation step), the engine's records [programs, GPUs,
stages, 3] and the routed tokens (drawn once). The
coefficients are fitted to two measured runs on the 2-core reference machine (DeepSeek-V3 decode at 144
and 10,000 GPUs: peak RSS 0.21 and 2.9 GiB, docs/performance.md); it is an estimate, good to a factor of
about 1.5, meant to stop runs that cannot fit, not to budget them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from moesim.config.schema import Scenario

BASE_BYTES = 0.2e9  # interpreter, numpy, catalogue, topology
FLOW_BYTES = 48  # src, dst, bytes, gate, wait node per flow (8 bytes each) + arrival bookkeeping
RECORD_BYTES = 24  # enter, start, end (float64) per GPU and stage
FLOW_S = 0.8e-6  # build + engine seconds per flow (fitted, 10,000-GPU decode)
TOKEN_S = 1.3e-6  # routing seconds per routed token and layer, window included (fitted)


@dataclass(frozen=True)
class SizeEstimate:
    """bytes: peak memory; seconds: wall time on one reference core; flows: held from build to engine."""

    bytes: float
    seconds: float
    flows: float


def estimate(s: Scenario) -> SizeEstimate:
    """Memory and time of ``moesim run`` on ``s`` (see the module docstring)."""
    from moesim.iteration.build import routed_tokens_per_gpu  # build imports the engine's inputs
    g, m = s.cluster.num_gpus, s.model
    layers = max(1, m.num_hidden_layers - m.first_k_dense_replace)
    top_k = s.top_k
    routed = routed_tokens_per_gpu(s)
    partners = min(g, max(1, routed * top_k))
    w = s.workload
    passes = 2 if w.mode == "training" else 1
    # training without a pipeline simulates every accumulation step (ir/programs.training_programs); a
    # pipeline composes its micro-batches from one (pipeline/run.py)
    steps = w.accumulation_steps if w.mode == "training" and w.pipeline_stages == 1 else 1
    flows = g * partners * 2 * layers * w.micro_batches * steps
    stages = 16 * layers * passes * w.micro_batches * steps
    mem = BASE_BYTES + flows * FLOW_BYTES + stages * g * RECORD_BYTES + g * routed * top_k * 16
    sec = flows * passes * FLOW_S + 2 * g * routed * layers * TOKEN_S
    return SizeEstimate(mem, sec, flows)


def available_bytes() -> float:
    """Memory this process may use: the cgroup limit if one is set, else physical memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return float(text)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


FLUID_WARN_GPUS = 64


def guard(s: Scenario) -> None:
    """Raise ScenarioError when the memory estimate exceeds this machine's memory."""
    from moesim.util.errors import ScenarioError
    if s.sim.network == "fluid" and s.cluster.num_gpus > FLUID_WARN_GPUS:
        import warnings

        from moesim.util.errors import MoesimWarning
        warnings.warn(MoesimWarning(
            f"sim.network: fluid on {s.cluster.num_gpus} GPUs recomputes max-min rates at every flow event: "
            "expect minutes where the default (auto: the drain model above 8 GPUs) takes seconds"), stacklevel=2)
    if not s.sim.size_guard:
        return
    est, have = estimate(s), available_bytes()
    if est.bytes > have:
        raise ScenarioError(
            f"this run needs about {est.bytes / 2**30:.1f} GiB and {_t(est.seconds)} (estimate: {est.flows:.3g} "
            f"flows for {s.cluster.num_gpus:,} GPUs), this machine has {have / 2**30:.1f} GiB",
            path="cluster.nodes", fix="fewer nodes, fewer sim.sampled_tokens or sim.min_sampled_per_gpu (coarser "
                                      "routing), or --set sim.size_guard=false to run anyway")


def describe(s: Scenario) -> str:
    """One line: the estimate and this machine's memory."""
    est, have = estimate(s), available_bytes()
    return (f"size estimate: about {est.bytes / 2**30:.2f} GiB peak memory and {_t(est.seconds)} on one reference "
            f"core ({est.flows:.3g} flows); this machine has {have / 2**30:.1f} GiB")


def _t(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"
