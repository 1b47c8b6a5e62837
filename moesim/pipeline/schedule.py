"""The pipeline schedule as a discrete-event simulation (SimPy): stages run their micro-batches' forward
(and, training, backward) passes in the order of the schedule, each waiting for its input from the stage
before (forward) or after (backward), and the activations (gradients) move between stages as flows on the
topology (max-min sharing, moesim.engine.fluid). No I/O.

1F1B (Megatron-LM's non-interleaved schedule, Narayanan et al., SC'21, §2.2): stage s (0-based, p stages, m
micro-batches) runs min(p − s − 1, m) forward passes, then alternates one forward and one backward until the
forwards are done, then the remaining backwards. With equal stages of forward f and backward b and free
transfers, a step takes (m + p − 1)(f + b): the pipeline is idle for (p − 1)/(m + p − 1) of it (the bubble).
Inference runs the m forwards in order; the last leaves stage p−1 after (m + p − 1) f.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from moesim.engine.fluid import FluidNetwork


@dataclass(frozen=True)
class Op:
    """One pass of one micro-batch on one stage: ``kind`` "F" (forward) or "B" (backward)."""

    kind: str
    micro_batch: int


def one_f_one_b(stage: int, stages: int, micro_batches: int) -> list[Op]:
    """The 1F1B order of one stage's passes."""
    warm = min(stages - stage - 1, micro_batches)
    ops = [Op("F", i) for i in range(warm)]
    f, b = warm, 0
    while f < micro_batches:
        ops += [Op("F", f), Op("B", b)]
        f, b = f + 1, b + 1
    return ops + [Op("B", i) for i in range(b, micro_batches)]


def forward_only(stage: int, stages: int, micro_batches: int) -> list[Op]:
    return [Op("F", i) for i in range(micro_batches)]


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
                      latency: np.ndarray | None = None) -> Timeline:
    """Run the schedule: ``forward_s[p]`` and ``backward_s[p]`` (None: inference, forward only) seconds of one
    micro-batch's pass on each stage; ``links[s]`` the hand-over from stage s to s+1 (gradients go back over
    the same GPUs, reversed); ``capacity`` / ``latency`` the topology's links for the flows."""
    p = len(forward_s)
    env = simpy.Environment()
    net = FluidNetwork(env, capacity, latency) if links is not None and capacity is not None else None
    order = one_f_one_b if backward_s is not None else forward_only
    ready = {(k, s, i): env.event() for k in "FB" for s in range(p) for i in range(micro_batches)}
    tl = Timeline([[] for _ in range(p)])

    def hand_over(kind: str, src: int, dst: int, i: int) -> None:
        """The output of pass (kind, src, i) moves to stage dst; its input event fires when it lands."""
        event, now = ready[(kind, dst, i)], env.now
        link = links[min(src, dst)] if links is not None else None
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
            needs = _needs(op, s, p)
            if needs is not None:
                yield ready[needs]
            start = env.now
            yield env.timeout(float(forward_s[s] if op.kind == "F" else backward_s[s]))
            tl.passes[s].append((op.kind, op.micro_batch, start, env.now))
            if op.kind == "F" and s < p - 1:
                hand_over("F", s, s + 1, op.micro_batch)
            elif op.kind == "F" and backward_s is not None:
                ready[("B", s, op.micro_batch)].succeed()  # the last stage turns straight round
            elif op.kind == "B" and s > 0:
                hand_over("B", s, s - 1, op.micro_batch)

    for s in range(p):
        env.process(stage(s))
    env.run()
    return tl


def _needs(op: Op, s: int, p: int) -> tuple[str, int, int] | None:
    """The event a pass waits for: a forward its input from stage s−1, a backward its gradient from s+1
    (the last stage: its own forward of the micro-batch)."""
    if op.kind == "F":
        return ("F", s, op.micro_batch) if s > 0 else None
    return ("B", s, op.micro_batch)

