"""Experts across memory tiers: MoE inference whose routed experts do not all fit in GPU memory.

Experts live in GPU memory (HBM), host DRAM or NVMe (``cluster.host``); a plan picks which stay on the GPU
within a memory budget (``offload.plan``), a cache policy decides how that set changes (``cache.py``), and
a miss is served by fetching the weights over the host link or by running the expert on the CPU
(``offload.miss``), optionally with prefetch during attention. The run walks ``offload.steps`` decode steps
(token by token, so temporal locality decides the hit rate) and the stage-program engine times them.
Modules: tiers (budget, memory per tier, miss costs) → steps (routing per step) → access (cache walk) →
programs (stages) → engine → summary.
"""

from moesim.offload.run import OffloadResult, run_offload

__all__ = ["OffloadResult", "run_offload"]
