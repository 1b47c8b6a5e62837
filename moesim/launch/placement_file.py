"""SGLang's initial expert location file (``--init-expert-location``) of a scenario's placement."""

from __future__ import annotations

from typing import Any

from moesim.config.schema import Scenario


def sglang_expert_location(s: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
    """SGLang's initial expert location for the scenario's placement, and moesim's notes on it.

    The first is exactly what SGLang's ``--init-expert-location FILE`` reader passes as keyword arguments
    to ``ExpertLocationMetadata.init_by_mapping``: ``{"physical_to_logical_map": [[...] per model layer]}``,
    one row per model layer (dense layers get SGLang's trivial mapping, physical j → logical j mod E), each
    row ``E + redundant`` long. Any other key would be a TypeError there, so the notes (scenario, plan,
    the server flags that must match) go to a sidecar file."""
    from moesim import __version__
    from moesim.iteration.build import build  # routing and placement: heavy
    b = build(s)
    slots = b.placement.phy2log.shape[1]
    moe = dict(zip(b.model.moe_layer_ids, b.placement.phy2log.tolist()))
    rows = [moe.get(layer, [j % b.model.experts for j in range(slots)]) for layer in range(s.model.num_hidden_layers)]
    redundant = slots - b.model.experts
    notes = {"moesim_version": __version__, "scenario": s.name, "placement": s.placement.kind,
             "redundant_experts": redundant, "ep_size": s.cluster.num_gpus, "num_physical_experts": slots,
             "num_logical_experts": b.model.experts, "moe_layers": list(b.model.moe_layer_ids),
             "sglang_flags": f"--ep-size {s.cluster.num_gpus} --ep-num-redundant-experts {redundant}"}
    return {"physical_to_logical_map": rows}, notes
