"""Decode spans, the serving DES's fast path: several plain decode steps of one instance run as one SimPy
event where nothing could tell them from steps run one at a time. No I/O.

A span holds while the running batch only decodes: no sequence finishes before its last step, the KV cache
has room for every step (no preemption), no prompt can be admitted (none waits, or the first waiting one
stays blocked), nothing is being prefilled or transferred on the instance, and every step ends before the
``horizon``, the earliest time another party may read or change the instance. Step j of a batch of n
sequences holding S KV tokens then has context (S + (j-1) n) / n, which is the float the step-by-step path
computes (a mean of integers), and its seconds come from the same surface arithmetic (``Surface.times``);
its log rows are the ones the steps would have written. So spans change no output: tests/test_serve_golden.py
pins the outputs of the step-by-step DES, and tests/test_serve_spans.py compares the two on random streams.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np


def decode_span(inst: Any, dt: float, tokens: float, ctx: float) -> tuple[float, Any] | None:
    """(end time, apply) of k >= 2 decode steps of ``inst`` (an ``Instance``), the first being the step just
    planned (``dt`` seconds, ``tokens`` per GPU, context ``ctx``); None where a span does not hold."""
    sim = inst.sim
    if sim.mtp is not None or inst.prefilling or inst.arrived or inst.incoming or (
            inst.waiting and not blocked(inst)):
        return None
    end, limit = sim.env.now + dt, horizon(sim, inst)
    if end >= limit:  # something may look at the instance during the first step already
        return None
    s, b = sim.state, np.asarray(inst.running, dtype=np.int64)
    left = int((s.osl[b] - s.generated[b]).min())  # steps until the first sequence finishes
    if left < 2:
        return None
    rows, end, kv, k = _steps(inst, b, dt, tokens, ctx, end, limit, left)
    if k < 2:
        return None
    sim.log.rows.extend(rows)
    sim.span_steps += k
    inst.iters += k

    def apply() -> None:
        s.generated[b] += k
        s.kv[b] += k
        inst.kv_used = kv
        inst._retire(b)

    return end, apply


def _steps(inst: Any, b: np.ndarray, dt: float, tokens: float, ctx: float, end: float, limit: float, left: int
           ) -> tuple[list[tuple], float, float, int]:
    """(log rows, end time, KV tokens used after, steps) of the span: steps 2, 3, ... are added while the
    KV cache has room to grow (``_make_room`` would preempt otherwise) and they end before ``limit``."""
    sim, n = inst.sim, int(b.size)
    total, cap = int(sim.state.kv[b].sum()), inst.role.kv_tokens
    surface, host = sim.surfaces[(inst.role.name, "decode")], sim.overheads.host_s
    who, waiting = (inst.role_id, inst.index), len(inst.waiting)
    rows = [(sim.env.now, dt, *who, 1, tokens, ctx, n, waiting, inst.kv_used)]
    kv, k, chunk = inst.kv_used + n, 1, 16
    while k < left:  # the next steps' seconds: the first few one by one, then a chunk at a time
        if k < 4:
            c = [(total + k * n) / n]
            ds = [surface(tokens, c[0]) + host]
        else:
            ca = (total + np.arange(k, min(left, k + chunk), dtype=np.int64) * n) / n
            c, ds = ca.tolist(), (surface.times(tokens, ca) + host).tolist()
            chunk *= 4
        for d, cj in zip(ds, c, strict=True):
            if not (kv + n <= cap or n <= 1) or end + d >= limit:
                return rows, end, kv, k
            rows.append((end, d, *who, 1, tokens, cj, n, waiting, kv))
            end, kv, k = end + d, kv + n, k + 1
    return rows, end, kv, k


def blocked(inst: Any) -> bool:
    """Whether the first waiting prompt stays unadmitted while the running batch only decodes: no free slot,
    no token budget beside the decode tokens (mixed batches), or its KV does not fit (the batch only grows)."""
    r, role = inst.waiting[0], inst.role
    if len(inst.running) + len(inst.prefilling) >= role.max_running:
        return True
    if role.sched.policy.mixes and role.prefill_budget - len(inst.running) <= 0:
        return True
    return not inst._fits(r, inst.sim.state.prompt(r))


def horizon(sim: Any, inst: Any) -> float:
    """The earliest time another party may read or change ``inst`` (join-the-shortest-queue reads every
    instance's load): the next arrival, the next scheduled hand-over, front-end delay or KV landing, and,
    where instances feed one another (closed loop: a finish sends the next request; disaggregated: a prefill
    hands over), the end of every other instance's current step."""
    now, arrival = sim.env.now, sim.state.arrival
    while sim.pending and sim.pending[0] < now:  # fired already (events run in time order)
        heapq.heappop(sim.pending)
    h = sim.pending[0] if sim.pending else math.inf
    if sim.concurrency is None and sim.next_arrival < len(arrival):
        h = min(h, float(arrival[sim.next_arrival]))
    if sim.concurrency is not None or sim.deployment.kind == "disaggregated":
        h = min([h, *(j.until for group in sim.instances.values() for j in group if j is not inst)])
    return h


def exact_delay(now: float, end: float) -> float:
    """The largest delay d with now + d <= end in floating point (SimPy schedules at now + delay). Usually
    now + d == end; where the sums round half to even past ``end`` (no d reaches it), now + d is the float just
    below, and a second delay of end - (now + d) (exact: the two are within a factor of two) lands on it, so
    that a span ends at the float its steps' sum reached, as the step-by-step path would."""
    d = end - now
    while now + d < end:
        d = math.nextafter(d, math.inf)
    while now + d > end:
        d = math.nextafter(d, -math.inf)
    return d
