"""Contiguous placement (Megatron/DeepEP default): slot j holds expert j, so GPU g holds experts
[g·E/G, (g+1)·E/G). Redundant slots, if any, come last and hold one more replica each of the experts with
the highest expected load, round-robin from the hottest (the tail GPUs serve as the redundant-expert GPUs).
"""

from __future__ import annotations

import numpy as np

from moesim.placement.base import Placement


def contiguous(load: np.ndarray, gpus: int, redundant: int = 0, **_: object) -> Placement:
    """load: [layers, E] expected load per logical expert (only its order is used). Returns a Placement
    with R = E + redundant slots per layer (R divisible by ``gpus``, checked by config)."""
    layers, experts = load.shape
    hottest = np.argsort(-load, axis=1, kind="stable")
    extra = hottest[:, np.arange(redundant) % experts]
    return Placement(np.concatenate([np.tile(np.arange(experts), (layers, 1)), extra], axis=1), gpus)
