"""The ``runtime:`` section of a scenario: the serving engine's own time per iteration (host work, kernel
launches), read by the stage programs (``moesim.ir.overheads``), and a training framework's time per MoE layer
(``framework``, ``layer_sync_s``; moesim.ir.programs.training_programs)."""

from __future__ import annotations

from typing import Literal

from moesim.config.types import Seconds, Strict


class RuntimeSpec(Strict):
    """The serving engine's own time per iteration, as named stages (never folded into another stage).
    host_overhead_s: scheduling, sampling and detokenisation per iteration on the host (stage
    ``host_overhead``). launch: ``cuda_graph`` replays captured graphs (no per-kernel launch cost) or
    ``eager`` launches every kernel (stage ``kernel_launch``: the layer's kernels x ``kernel_launch_s``).
    Both are ``estimated`` until fitted on measured deployments: defaults 0 (no overhead).

    Training: framework ``megatron`` (Megatron-Core, as NeMo's Megatron-Bridge runs it) gives ``layer_sync_s``
    its ``fitted`` value (catalog/frameworks.json, fitted on Megatron-Bridge's published rows:
    ``moesim validate training --refit``). layer_sync_s: seconds the GPUs wait per MoE layer and pass
    (forward, backward) for what the kernels do not account for (the token dispatcher's host
    synchronisation, launches, small kernels): stage ``framework_sync``. None: the framework's value, 0
    without one."""

    host_overhead_s: Seconds = 0.0
    launch: Literal["cuda_graph", "eager"] = "cuda_graph"
    kernel_launch_s: Seconds = 0.0
    framework: Literal["megatron"] | None = None
    layer_sync_s: Seconds | None = None
