"""Serving schedulers: when an instance with running sequences and prompts it could admit runs a prefill
iteration instead of a decode step. ``serving.scheduler.policy`` names one (``SCHEDULERS``); a new policy is
one class here (or in its own module) and one ``SCHEDULERS.register``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from moesim.util.registry import Registry


class Policy(ABC):
    """A scheduling policy: ``decode_due`` says whether the running sequences get a decode step before the
    next prefill iteration; a policy that ``mixes`` runs both in one iteration instead."""

    mixes = False

    @abstractmethod
    def decode_due(self, running: bool, last_prefill: bool) -> bool:
        """Whether the running sequences decode before the next prefill iteration."""


class PrefillFirst(Policy):
    """SGLang's default: a prefill iteration whenever a waiting request can be admitted."""

    def decode_due(self, running: bool, last_prefill: bool) -> bool:
        return False


class Alternate(Policy):
    """After each prefill iteration, the running sequences get one decode step before the next prefill."""

    def decode_due(self, running: bool, last_prefill: bool) -> bool:
        return running and last_prefill


class Mixed(Policy):
    """Prefill chunks and decode tokens in one iteration under the token budget, decode tokens first (vLLM
    V1's scheduler, TensorRT-LLM's in-flight batching, SGLang with --enable-mixed-chunk)."""

    mixes = True

    def decode_due(self, running: bool, last_prefill: bool) -> bool:
        return True


SCHEDULERS: Registry[Policy] = Registry("serving scheduler", "serving.scheduler.policy")
SCHEDULERS.register("prefill_first", PrefillFirst(), help="a prefill iteration whenever a waiting request fits "
                    "(SGLang's default); decode otherwise")
SCHEDULERS.register("alternate", Alternate(), help="one decode step of the running sequences after each prefill "
                    "iteration")
SCHEDULERS.register("mixed", Mixed(), help="every running sequence decodes and the budget left goes to prompt "
                    "chunks, in one iteration (vLLM V1, TensorRT-LLM in-flight batching)")
