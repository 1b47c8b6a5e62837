"""The pipeline schedule as a discrete-event simulation (SimPy): stages run their micro-batches' forward
(and, training, backward) passes in the order of the schedule, each waiting for its input from the stage
before (forward) or after (backward), and the activations (gradients) move between stages as flows on the
topology (max-min sharing, moesim.engine.fluid). No I/O.

1F1B (Megatron-LM's non-interleaved schedule, Narayanan et al., SC'21, §2.2): stage s (0-based, p stages, m
micro-batches) runs min(p − s − 1, m) forward passes, then alternates one forward and one backward until the
forwards are done, then the remaining backwards. With equal stages of forward f and backward b and free
transfers, a step takes (m + p − 1)(f + b): the pipeline is idle for (p − 1)/(m + p − 1) of it (the bubble).
Inference runs the m forwards in order; the last leaves stage p−1 after (m + p − 1) f.

Interleaved 1F1B (the same paper, §2.2.2; Megatron-LM's forward_backward_pipelining_with_interleaving): each
stage holds v model chunks (virtual stage j = c·p + s on stage s), a micro-batch passes stage 0..p−1 v times.
Stage s runs min((p − s − 1)·2 + (v − 1)·p, m·v) forward chunks first, then alternates, in groups of p
micro-batches per chunk (m a multiple of p). With equal chunks of f/v and b/v and free transfers a step
takes (m·v + p − 1)(f + b)/v: the bubble shrinks v-fold, to (p − 1)/(m·v + p − 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import simpy

from moesim.engine.fluid import FluidNetwork


@dataclass(frozen=True)
class Op:
    """One pass of one micro-batch on one stage: ``kind`` "F" (forward) or "B" (backward), of model chunk
    ``chunk`` (0 without interleaving)."""

    kind: str
    micro_batch: int
    chunk: int = 0


def _warm_steady_cool(warm: int, total: int, op: Callable[[str, int], Op]) -> list[Op]:
    """``warm`` forwards, then one forward and one backward in turn until the ``total`` forwards are done,
    then the remaining backwards; ``op(kind, k)`` is the k-th pass of that kind."""
    ops = [op("F", k) for k in range(warm)]
    f, b = warm, 0
    while f < total:
        ops += [op("F", f), op("B", b)]
        f, b = f + 1, b + 1
    return ops + [op("B", k) for k in range(b, total)]


def one_f_one_b(stage: int, stages: int, micro_batches: int) -> list[Op]:
    """The 1F1B order of one stage's passes."""
    return _warm_steady_cool(min(stages - stage - 1, micro_batches), micro_batches, Op)


def forward_only(stage: int, stages: int, micro_batches: int) -> list[Op]:
    return [Op("F", i) for i in range(micro_batches)]


def interleaved(stage: int, stages: int, micro_batches: int, chunks: int) -> list[Op]:
    """The interleaved 1F1B order of one stage's passes over its ``chunks`` model chunks (micro_batches a
    multiple of stages): the k-th forward is chunk (k // p) mod v of micro-batch (k // (p·v))·p + k mod p,
    the k-th backward the same with the chunks in reverse."""
    p, v, total = stages, chunks, micro_batches * chunks

    def op(kind: str, k: int) -> Op:
        c = (k // p) % v
        return Op(kind, (k // (p * v)) * p + k % p, c if kind == "F" else v - 1 - c)

    return _warm_steady_cool(min((p - stage - 1) * 2 + (v - 1) * p, total), total, op)


@dataclass(frozen=True)
class Link:
    """How stage s hands a micro-batch to stage s+1: ``paths`` [F, P] link ids (one flow per GPU of the stage
    to the GPU of the same rank next door), ``reverse`` the paths back (gradients), ``nbytes`` [F] per flow."""

    paths: np.ndarray
    reverse: np.ndarray
    nbytes: np.ndarray


@dataclass
class Timeline:
    """What ran: per stage the (kind, micro-batch, start, end) of its passes, and per hand-over the
    (from stage, to stage, micro-batch, start, end) of its transfer."""

    passes: list[list[tuple[str, int, float, float]]]
    transfers: list[tuple[int, int, int, float, float]] = field(default_factory=list)

    @property
    def step_s(self) -> float:
        return max(end for row in self.passes for *_, end in row)

    def busy_s(self) -> np.ndarray:
        """Seconds each stage computes [p]."""
        return np.array([sum(e - s for _, _, s, e in row) for row in self.passes])

    def bubble(self) -> float:
        """Share of the stages' time idle over the step: 1 − busy / (p · step)."""
        return 1.0 - float(self.busy_s().sum()) / (len(self.passes) * self.step_s)


def simulate_pipeline(forward_s: np.ndarray, backward_s: np.ndarray | None, micro_batches: int,
                      links: list[Link] | None = None, capacity: np.ndarray | None = None,
                      latency: np.ndarray | None = None, chunks: int = 1) -> Timeline:
    """Run the schedule: ``forward_s[p]`` and ``backward_s[p]`` (None: inference, forward only) seconds of one
    micro-batch's pass on each stage; ``links[s]`` the hand-over from stage s to s+1 (gradients go back over
    the same GPUs, reversed); ``capacity`` / ``latency`` the topology's links for the flows. ``chunks`` > 1
    (training): the interleaved schedule, each stage's blocks in that many equal chunks (a pass f/chunks);
    the hand-over from the last stage back to the first (one chunk to the next) moves as a free transfer."""
    p, v = len(forward_s), chunks
    env = simpy.Environment()
    net = FluidNetwork(env, capacity, latency) if links is not None and capacity is not None else None
    if backward_s is None:
        order = forward_only
    else:
        order = one_f_one_b if v == 1 else partial(interleaved, chunks=v)
    # a pass's input: (kind, virtual stage c·p + s, micro-batch)
    ready = {(k, j, i): env.event() for k in "FB" for j in range(p * v) for i in range(micro_batches)}
    tl = Timeline([[] for _ in range(p)])

    def hand_over(kind: str, src: int, dst: int, i: int) -> None:
        """The output of pass (kind, virtual stage src, i) moves to virtual stage dst; its input event fires
        when it lands."""
        event, now = ready[(kind, dst, i)], env.now
        a, b = src % p, dst % p
        link = links[min(a, b)] if links is not None and abs(a - b) == 1 else None
        src, dst = a, b
        if net is None or link is None or not link.nbytes.size:
            tl.transfers.append((src, dst, i, now, now))
            event.succeed()
            return
        paths = link.paths if kind == "F" else link.reverse

        def landed(_tokens: np.ndarray, times: np.ndarray) -> None:
            end = float(times.max())
            tl.transfers.append((src, dst, i, now, end))
            env.timeout(max(0.0, end - env.now)).callbacks.append(lambda _e: event.succeed())
        net.add(paths, link.nbytes, np.arange(link.nbytes.size), landed)

    def stage(s: int):
        for op in order(s, p, micro_batches):
            j = op.chunk * p + s  # the virtual stage
            needs = _needs(op, j)
            if needs is not None:
                yield ready[needs]
            start = env.now
            yield env.timeout(float(forward_s[s] if op.kind == "F" else backward_s[s]) / v)
            tl.passes[s].append((op.kind, op.micro_batch, start, env.now))
            if op.kind == "F" and j < p * v - 1:
                hand_over("F", j, j + 1, op.micro_batch)
            elif op.kind == "F" and backward_s is not None:
                ready[("B", j, op.micro_batch)].succeed()  # the last virtual stage turns straight round
            elif op.kind == "B" and j > 0:
                hand_over("B", j, j - 1, op.micro_batch)

    for s in range(p):
        env.process(stage(s))
    env.run()
    return tl


def _needs(op: Op, j: int) -> tuple[str, int, int] | None:
    """The event a pass on virtual stage j waits for: a forward its input from j−1, a backward its gradient
    from j+1 (the last virtual stage: its own forward of the micro-batch)."""
    if op.kind == "F":
        return ("F", j, op.micro_batch) if j > 0 else None
    return ("B", j, op.micro_batch)

