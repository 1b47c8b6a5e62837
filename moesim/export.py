"""Placements in other tools' formats."""

from __future__ import annotations

from typing import Any

from moesim.config.schema import Scenario


def sglang_expert_location(s: Scenario) -> dict[str, Any]:
    """SGLang's initial expert location for the scenario's placement: ``physical_to_logical_map`` with one
    row per model layer (dense layers get the trivial mapping), for ``--init-expert-location``."""
    from moesim.build import build  # noqa: PLC0415 (routing and placement: heavy)

    b = build(s)
    slots = b.placement.phy2log.shape[1]
    moe = dict(zip(b.model.moe_layer_ids, b.placement.phy2log.tolist()))
    rows = [moe.get(layer, [j % b.model.experts for j in range(slots)]) for layer in range(s.model.num_hidden_layers)]
    return {"physical_to_logical_map": rows, "moesim": {"scenario": s.name, "placement": s.placement.kind,
                                                        "redundant_experts": s.placement.redundant_experts,
                                                        "ep_size": s.cluster.num_gpus}}
