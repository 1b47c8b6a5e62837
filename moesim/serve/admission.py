"""Admission on a serving instance (a mixin of moesim.serve.sim.Instance): whether a prompt's KV cache fits,
what an admitted request commits under TensorRT-LLM's guaranteed_no_evict, and the attention-DP balance
that holds new prompts back. No I/O."""

from __future__ import annotations


class Admission:
    """Instance's admission rules (it supplies sim, role, waiting, running, prefilling, iters, since,
    kv_used, committed and reserve)."""

    def _balance_holds(self) -> bool:
        """TensorRT-LLM's attention-DP balance: new prompts wait until every rank has one (as many waiting
        as ranks) or the oldest has waited ``balance_timeout_iters`` iterations of the running batch."""
        t, ranks = self.role.sched.balance_timeout_iters, self.role.gpus_per_instance // self.role.sched.tp
        if not t or ranks <= 1 or len(self.waiting) >= ranks or not (self.running or self.prefilling):
            return False  # an idle engine has no iterations to wait on
        return self.iters - self.since.get(self.waiting[0], self.iters) < t

    def _fits(self, r: int, need: float, extra: float = 0.0) -> bool:
        """Admission: the prompt's ``need`` KV tokens fit (optimistic), or under ``guaranteed_no_evict``
        the prompt and every token it may still generate fit beside what admitted requests may grow to."""
        if self.role.sched.admission == "guaranteed_no_evict":
            return self.committed + extra + self._total(r) <= self.role.kv_tokens
        return self.kv_used + extra + need <= self.role.kv_tokens

    def _total(self, r: int) -> float:
        """KV tokens request r may hold here: its prompt, and on a decoding instance what it may generate."""
        s = self.sim.state
        return float(s.prompt(r) + (s.osl[r] - s.generated[r] if self.role.decodes else 0))

    def _commit(self, r: int) -> None:
        if self.role.sched.admission == "guaranteed_no_evict":
            self.reserve[r] = self._total(r)
            self.committed += self.reserve[r]

    def _release(self, r: int) -> None:
        self.committed -= self.reserve.pop(r, 0.0)
