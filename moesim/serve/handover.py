"""The disaggregated hand-over of the serving DES (moesim.serve.sim.ServeSim): a prefilled request waits
for room on a decode instance, its KV cache moves there as one flow on the topology, and the first token
reaches the client when it lands (Dynamo and SGLang's PD stream it from the decode side)."""

from __future__ import annotations

import numpy as np


class Disaggregation:
    """ServeSim's prefill → decode methods (it supplies env, state, instances, deployment, net, topology,
    transfers, overheads, _after and _at)."""

    def hand_over(self, src, r: int) -> None:
        """A prefilled request waits, its KV still on the prefill GPU, for room on a decode instance (after
        the engine's hand-over set-up, handoff_s)."""
        self._after(self.overheads.handoff_s, lambda: self._to_decode(src, r))

    def _to_decode(self, src, r: int) -> None:
        dst = min(self.instances["decode"], key=lambda i: i.load())
        self.transfers[r] = (src, dst, 0.0)
        dst.arrived.append(r)
        dst.kick()

    def start_transfer(self, r: int, dst, need: float) -> None:
        """The KV cache of request r moves from its prefill GPU to its decode GPU, as one flow."""
        src, _, _ = self.transfers[r]
        self.transfers[r] = (src, dst, self.env.now)
        dst.incoming += 1
        nbytes = self.deployment.kv_bytes_per_token * float(self.state.kv[r])  # the prompt's cache
        a = src.role.gpu(src.index, r % src.role.gpus_per_instance)
        b = dst.role.gpu(dst.index, r % dst.role.gpus_per_instance)
        if self.net is None or nbytes <= 0 or a == b:
            self._arrive(np.array([r]), np.array([self.env.now]), need)
            return
        paths = self.topology.paths(np.array([a]), np.array([b]))
        self.net.add(paths, np.array([nbytes]), np.array([r]),
                     lambda tok, times: self._arrive(tok, times, need))

    def _arrive(self, tokens: np.ndarray, times: np.ndarray, need: float) -> None:
        for r, t in zip(tokens.tolist(), times.tolist(), strict=True):
            self._at(max(0.0, t - self.env.now), lambda r=r: self._land(r, need))

    def _land(self, r: int, need: float) -> None:
        s = self.state
        src, dst, t0 = self.transfers.pop(r)
        s.transfer_s[r] += self.env.now - t0
        src.kv_used -= s.kv[r]  # the prefill side lets go
        src._release(r)
        src.kick()
        dst.reserved -= need
        dst.incoming -= 1
        dst.kv_used += s.kv[r]
        if np.isnan(s.t_first[r]):  # disaggregated: the first token reaches the client with its KV cache
            s.t_first[r] = self.env.now
        dst.running.append(r)
        dst.kick()
