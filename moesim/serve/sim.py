"""The request-level serving DES (SimPy): arrivals, continuous batching, KV-cache admission and preemption,
chunked prefill, MTP, and disaggregated KV transfer as flows on the topology. No I/O.

Each instance is one SimPy process that runs one iteration at a time; an iteration's duration comes from
the role's surface (tokens per GPU, mean context). Data-parallel attention: an instance's tokens are
spread evenly over its GPUs. Preemption recomputes (vLLM's default): the sequence frees its KV cache and
goes back to the front of a prefill queue with its prompt and the tokens generated so far.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np
import simpy

from moesim.config.serving import MtpSpec
from moesim.engine.fluid import FluidNetwork
from moesim.hw.topology import Topology
from moesim.serve.admission import Admission
from moesim.serve.deploy import Deployment, Role
from moesim.serve.guard import SloDecided, SloGuard
from moesim.serve.handover import Disaggregation
from moesim.serve.spans import decode_span, exact_delay
from moesim.serve.state import Log, State, accepted
from moesim.serve.surface import Surface, mixed_time
from moesim.serve.terms import Overheads
from moesim.serve.workload import Requests
from moesim.util.errors import MoesimError


class Instance(Admission):
    """One EP group's scheduler loop."""

    def __init__(self, sim: ServeSim, role: Role, index: int, role_id: int) -> None:
        self.sim, self.role, self.index, self.role_id = sim, role, index, role_id
        self.waiting: deque[int] = deque()  # prefill queue
        self.arrived: deque[int] = deque()  # decode side: prefilled elsewhere, waiting for KV room
        self.prefilling: list[int] = []  # admitted, prompt partly computed (hold their KV)
        self.running: list[int] = []  # decoding, in admission order
        self.kv_used = 0.0
        self.reserved = 0.0  # decode side: KV reserved for transfers in flight
        self.queued = 0.0  # prompt tokens in ``waiting``
        self.incoming = 0  # decode side: KV transfers in flight to this instance
        self.wake = sim.env.event()
        self.last_prefill = False
        self.committed = 0.0  # guaranteed_no_evict: KV tokens the admitted requests may grow to
        self.reserve: dict[int, float] = {}
        self.iters = 0  # iterations run so far
        self.since: dict[int, int] = {}  # the iteration each waiting request was queued at (DP balance)
        self.until = math.inf  # when the step (or span of steps) running now ends; inf while idle
        sim.env.process(self.loop())

    def load(self) -> float:
        """How busy: queued prompt tokens plus KV in use (join-the-shortest-queue dispatch)."""
        return self.queued + self.kv_used + self.reserved + len(self.arrived)

    def enqueue(self, r: int, front: bool = False) -> None:
        (self.waiting.appendleft if front else self.waiting.append)(r)
        self.since.setdefault(r, self.iters)
        self.queued += self.sim.state.prompt(r)
        self.kick()

    def kick(self) -> None:
        if not self.wake.triggered:
            self.wake.succeed()
            if self.until == math.inf:  # an idle instance acts now: no other instance's span may pass it
                self.until = self.sim.env.now

    def loop(self):
        env = self.sim.env
        while True:
            self._admit_arrived()
            work = self._next()
            if work is None:
                self.until = math.inf
                self.wake = env.event()
                yield self.wake
                continue
            kind, dt, apply, tokens, ctx = work
            self.sim.tick()
            dt += self.sim.overheads.host_s  # the engine's host work between GPU passes
            span = decode_span(self, dt, tokens, ctx) if kind == 1 and self.sim.spans else None
            if span is not None:  # several decode steps that nothing else can see: one event
                self.until, apply = span
                yield env.timeout(exact_delay(env.now, self.until))
                if env.now < self.until:  # the sum rounded past it: the rest (tests/test_serve_spans.py)
                    yield env.timeout(self.until - env.now)
                apply()
                continue
            self.iters += 1
            self.sim.log.rows.append((env.now, dt, self.role_id, self.index, kind, tokens, ctx, len(self.running),
                                      len(self.waiting) + len(self.arrived), self.kv_used))
            self.until = env.now + dt
            yield env.timeout(dt)
            apply()

    def _next(self):
        policy = self.role.sched.policy
        if policy.mixes and self.role.prefills:
            return self._mixed_next()
        decode_due = policy.decode_due(bool(self.running), self.last_prefill)
        if self.role.prefills and not decode_due:
            chunks = self._prefill_batch()
            if chunks:
                self.last_prefill = True
                return self._prefill_work(chunks)
        self.last_prefill = False
        if self.running:
            return self._decode_work()
        return None

    def _mixed_next(self):
        """One iteration of a mixed-batch engine (vLLM V1, TensorRT-LLM in-flight batching): every running
        sequence decodes, and the token budget left over goes to prompt chunks (the partly prefilled first).
        Either part alone runs as a plain decode or prefill iteration."""
        step = 1 + (self.sim.mtp.draft_tokens if self.sim.mtp else 0)
        self._make_room(step)
        left = self.role.prefill_budget - step * len(self.running)
        chunks = self._prefill_batch(left) if left > 0 else []
        if not chunks:
            return self._decode_work() if self.running else None
        if not self.running:
            return self._prefill_work(chunks)
        p_tokens, ctx, p_apply = self._prefill_parts(chunks)
        d_tokens, dctx, d_apply = self._decode_parts(graphs=False)
        g = self.role.gpus_per_instance
        tokens = math.ceil(p_tokens / g) + d_tokens
        dt = mixed_time(self.sim.surfaces[(self.role.name, "prefill")], self.sim.surfaces[(self.role.name, "decode")],
                        tokens, ctx, d_tokens, dctx)
        if self.sim.mtp:
            dt += self.sim.surfaces[(self.role.name, "decode")](d_tokens, dctx) * self._draft_share()

        def apply() -> None:
            d_apply()  # the running sequences' tokens first: the prompts finishing now join them after
            p_apply()

        return 2, dt, apply, tokens, ctx

    # ---- prefill -------------------------------------------------------------------------------------
    def _prefill_batch(self, budget: int | None = None) -> list[tuple[int, int]]:
        """(request, tokens to compute) up to the token budget (default: the role's): the partly prefilled
        first, then new ones admitted in arrival order while their whole prompt fits in the KV cache."""
        s, out = self.sim.state, []
        budget = self.role.prefill_budget if budget is None else budget
        for r in self.prefilling:
            c = min(budget, s.prompt(r) - s.cached[r] - s.computed[r])
            if c > 0:
                out.append((r, c))
                budget -= c
        while self.waiting and budget > 0 and not self._balance_holds():
            r = self.waiting[0]
            need = s.prompt(r)
            if (not self._fits(r, need) or (not self.role.sched.chunked_prefill and need - s.cached[r] > budget)
                    or len(self.running) + len(self.prefilling) >= self.role.max_running):
                break
            self.waiting.popleft()
            self.queued -= need
            self.prefilling.append(r)
            self._commit(r)
            self.kv_used += need
            s.kv[r], s.computed[r] = need, 0
            c = min(budget, need - s.cached[r])
            out.append((r, c))
            budget -= c
        return out

    def _prefill_work(self, chunks: list[tuple[int, int]]):
        total, ctx, apply = self._prefill_parts(chunks)
        tokens = math.ceil(total / self.role.gpus_per_instance)
        dt = self.sim.surfaces[(self.role.name, "prefill")](tokens, ctx)
        return 0, dt, apply, tokens, ctx

    def _prefill_parts(self, chunks: list[tuple[int, int]]):
        """(prompt tokens of the instance, causal-equivalent context, what to apply when the step ends)."""
        s = self.sim.state
        total = sum(c for _, c in chunks)
        # causal attention: a chunk of c new tokens after p earlier ones attends on average over p + c/2,
        # which is what a prefill of context 2p + c costs per token (moesim.ir.blocks)
        ctx = sum(c * (2 * (s.cached[r] + s.computed[r]) + c) for r, c in chunks) / total

        def apply() -> None:
            for r, c in chunks:
                s.computed[r] += c
                if s.cached[r] + s.computed[r] >= s.prompt(r):
                    self.prefilling.remove(r)
                    self._prefilled(r)

        return total, ctx, apply

    def _prefilled(self, r: int) -> None:
        s, now = self.sim.state, self.sim.env.now
        if s.generated[r] == 0:  # the prefill's last position emits the first token; disaggregated, the
            s.generated[r] = 1  # client sees it once the KV cache has reached the decode side (ServeSim._land)
            if self.role.decodes or s.generated[r] >= s.osl[r]:
                s.t_first[r] = now
        if s.generated[r] >= s.osl[r]:
            self._finish(r)
        elif self.role.decodes:
            self.running.append(r)
        else:
            self.sim.hand_over(self, r)

    # ---- decode --------------------------------------------------------------------------------------
    def _make_room(self, step: int) -> None:
        """Preempt the most recently admitted sequences until every running one can grow by ``step``."""
        while self.kv_used + step * len(self.running) > self.role.kv_tokens and len(self.running) > 1:
            self._preempt(self.running[-1])

    def _decode_work(self):
        self._make_room(1 + (self.sim.mtp.draft_tokens if self.sim.mtp else 0))
        tokens, ctx, apply = self._decode_parts(graphs=True)
        dt = self.sim.surfaces[(self.role.name, "decode")](tokens, ctx)
        if self.sim.mtp:
            dt *= 1 + self._draft_share()
        return 1, dt, apply, tokens, ctx

    def _draft_share(self) -> float:
        """The MTP draft module's time as a share of the decode step: one block per drafted token
        (DeepSeek-V3's MTP module) against the model's blocks."""
        mtp = self.sim.mtp
        return mtp.draft_tokens * mtp.draft_cost / self.role.scenario.model.num_hidden_layers if mtp else 0.0

    def _decode_parts(self, graphs: bool):
        """(decode tokens per GPU, mean context, what to apply when the step ends) for every running
        sequence; ``graphs``: pad the batch to a captured CUDA-graph size (a pure decode step)."""
        s, mtp = self.sim.state, self.sim.mtp
        step = 1 + (mtp.draft_tokens if mtp else 0)
        batch = list(self.running)  # a snapshot: transfers may land during the step
        g = self.role.gpus_per_instance  # an attention TP group's batch spreads over its GPUs: a fraction each
        per_gpu = len(batch) / g if self.role.sched.tp > 1 else math.ceil(len(batch) / g)
        tokens = (self.role.sched.pad(per_gpu) if graphs else per_gpu) * step
        ctx = int(s.kv[batch].sum()) / len(batch)  # the float NumPy's mean gives: an exact sum, one division

        def apply() -> None:
            b = np.asarray(batch, dtype=np.int64)
            if mtp is None:  # one token each (a running sequence has one left at least)
                s.generated[b] += 1
                s.kv[b] += 1
                self.kv_used += float(b.size)
            else:
                acc = np.minimum(accepted(mtp, self.sim.rng, b.size), s.osl[b] - s.generated[b])
                s.generated[b] += acc
                s.kv[b] += acc
                self.kv_used += float(acc.sum())
            self._retire(b)

        return tokens, ctx, apply

    def _retire(self, b: np.ndarray) -> None:
        """The sequences of batch ``b`` that have generated their answer finish (in batch order)."""
        s = self.sim.state
        done = b[s.generated[b] >= s.osl[b]]
        if done.size:
            gone = set(done.tolist())
            self.running = [r for r in self.running if r not in gone]
            for r in done.tolist():
                self._finish(r)

    def _preempt(self, r: int) -> None:
        s = self.sim.state
        self._release(r)
        self.running.remove(r)
        self.kv_used -= s.kv[r]
        s.kv[r], s.computed[r] = 0, 0
        s.preemptions[r] += 1
        self.sim.requeue(self, r)

    def _finish(self, r: int) -> None:
        s = self.sim.state
        self._release(r)
        s.t_done[r] = self.sim.env.now
        self.kv_used -= s.kv[r]
        s.kv[r] = 0
        self.sim.finished_one()

    # ---- disaggregated decode side -------------------------------------------------------------------
    def _admit_arrived(self) -> None:
        s = self.sim.state
        while self.arrived:
            r = self.arrived[0]
            need = s.prompt(r) + 1
            if not self._fits(r, need, self.reserved) or (
                    len(self.running) + self.incoming >= self.role.max_running):
                return
            self.arrived.popleft()
            self._commit(r)
            self.reserved += need
            self.sim.start_transfer(r, self, need)


class ServeSim(Disaggregation):
    """Every instance, the arrival process and the KV-transfer network, in one SimPy environment."""

    def __init__(self, deployment: Deployment, surfaces: dict[tuple[str, str], Surface], requests: Requests,
                 prefix_hit: float, mtp: MtpSpec | None, rng: np.random.Generator,
                 topology: Topology | None, concurrency: int | None = None, overheads: Overheads | None = None,
                 spans: bool = True, guard: SloGuard | None = None) -> None:
        self.env = simpy.Environment()
        self.guard, self.ticks = guard, 0  # stop once the SLO verdict is certain (moesim.serve.guard)
        self.verdict: tuple[bool, float] | None = None  # (met, when) where the guard stopped the run
        self.spans = spans  # decode spans (spans.decode_span); False: every step its own event (the reference)
        self.pending: list[float] = []  # times of scheduled callbacks that touch instances (a heap)
        self.next_arrival = 0  # open loop: the next request the arrival process enters
        self.span_steps = 0  # decode steps run inside spans (a diagnostic)
        self.overheads = overheads or Overheads()
        self.deployment, self.surfaces, self.mtp, self.rng = deployment, surfaces, mtp, rng
        self.state = State.of(requests, prefix_hit)
        self.log = Log()
        self.finished = 0
        self.instances: dict[str, list[Instance]] = {
            role.name: [Instance(self, role, i, k) for i in range(role.instances)]
            for k, role in enumerate(deployment.roles)}
        self.net = (FluidNetwork(self.env, topology.capacity_Bps, topology.latency_s)
                    if topology is not None else None)
        self.topology = topology
        self.transfers: dict[int, tuple[Instance, Instance, float]] = {}
        self.flows = 0
        self.concurrency, self.sent = concurrency, 0
        if concurrency is None:
            self.env.process(self._arrivals())
        else:  # closed loop: the first `concurrency` requests now, then one per finished request
            self.state.arrival = np.full(len(self.state.arrival), np.nan)
            for _ in range(min(concurrency, len(self.state.arrival))):
                self._send_next()

    def run(self) -> None:
        """Run until every request has finished; a stall (no event left before that) is an error."""
        if not len(self.state.arrival):
            return
        try:
            self.env.run()
        except SloDecided as verdict:
            self.verdict = (verdict.met, self.env.now)
            return
        if self.finished < len(self.state.arrival):
            left = len(self.state.arrival) - self.finished
            raise MoesimError(f"serving stalled at t={self.env.now:.3f} s with {left} "
                              "requests unfinished (a scheduling deadlock: please report it with the scenario)")

    def tick(self) -> None:
        """An iteration starts: every 64th, ask the guard whether the SLO verdict is certain already."""
        self.ticks += 1
        if self.guard is not None and self.ticks % 64 == 0:
            met = self.guard.decided(self.state, self.env.now)
            if met is not None:
                raise SloDecided(met)

    def _prefill_instances(self) -> list[Instance]:
        return self.instances.get("aggregated") or self.instances["prefill"]

    def _arrivals(self):
        for r, t in enumerate(self.state.arrival):
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            self.next_arrival = r + 1  # what spans.horizon waits for
            self._enter(r)

    def _send_next(self) -> None:
        """Closed loop: send the next request now (a slot freed, or the run starts)."""
        if self.sent < len(self.state.arrival):
            r, self.sent = self.sent, self.sent + 1
            self.state.arrival[r] = self.env.now
            self._enter(r)

    def _enter(self, r: int) -> None:
        """Request r reaches the least loaded prefill queue after the engine's front end (request_s)."""
        self._after(self.overheads.request_s, lambda: min(self._prefill_instances(), key=Instance.load).enqueue(r))

    def _after(self, delay: float, fn) -> None:
        """Call ``fn`` after ``delay`` seconds of simulated time (now when it is 0)."""
        if delay > 0:
            self._at(delay, fn)
        else:
            fn()

    def _at(self, delay: float, fn) -> None:
        """Schedule ``fn``, which touches instances, ``delay`` seconds from now (an event even at 0); its time
        joins ``pending``, which decode spans wait for (spans.horizon)."""
        heapq.heappush(self.pending, self.env.now + delay)
        self.env.timeout(delay).callbacks.append(lambda _e: fn())

    def finished_one(self) -> None:
        """A request finished: count it, and in a closed loop send the next one."""
        self.finished += 1
        if self.concurrency is not None:
            self._send_next()

    def requeue(self, inst: Instance, r: int) -> None:
        """A preempted sequence: back to the front of a prefill queue (its own instance when it prefills)."""
        target = inst if inst.role.prefills else min(self._prefill_instances(), key=Instance.load)
        target.enqueue(r, front=True)
