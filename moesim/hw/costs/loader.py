"""The one profile loader and the cost-model registry: a cluster's GPU gives the roofline on its figures,
or a profile whose format tag (``moesim.config.catalog.profile_kind``) names the cost model that reads it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moesim.config import catalog
from moesim.config.schema import ClusterSpec
from moesim.hw.costs.base import CostModel
from moesim.hw.costs.measured import MeasuredCosts, Profile
from moesim.hw.costs.roofline import ComputeCosts, RooflineCosts
from moesim.hw.costs.silicon import SiliconCosts, SiliconProfile
from moesim.model.moe import MoEModel
from moesim.util import safeio
from moesim.util.registry import Registry

# kind -> factory(cluster, model, top_k, profile document or None)
COST_MODELS: Registry[Callable[[ClusterSpec, MoEModel, int, Any], CostModel]] = Registry("cost model", "cluster.gpu")


@functools.lru_cache(maxsize=8)
def _profile_doc(path: str, mtime_ns: int) -> dict[str, Any]:
    """A profile file's document, parsed once per (path, modification time): every micro-batch's build asks
    for it, and a silicon profile is about a megabyte of JSON. Callers must not change it."""
    return safeio.load_json(Path(path), what="profile", limit=1 << 30)


def profile_doc(path: str | Path) -> dict[str, Any]:
    """The profile document at ``path`` (cached by path and modification time)."""
    return _profile_doc(str(path), Path(path).stat().st_mtime_ns)


def cost_model(cluster: ClusterSpec, model: MoEModel, top_k: int) -> CostModel:
    """The cluster's cost model: its GPU's profile read by the model its format names, else the roofline."""
    if not cluster.gpu_profile or not model.gated:  # the tables time SwiGLU experts only
        return COST_MODELS.get("roofline")(cluster, model, top_k, None)
    doc = profile_doc(cluster.gpu_profile)
    return COST_MODELS.get(catalog.profile_kind(doc) or "measured")(cluster, model, top_k, doc)


def _roofline(cluster: ClusterSpec, model: MoEModel, top_k: int, doc: Any) -> CostModel:
    return RooflineCosts(ComputeCosts.from_gpu(cluster.gpu, model.weight_dtype), model, top_k)


def _measured(cluster: ClusterSpec, model: MoEModel, top_k: int, doc: Any) -> CostModel:
    return MeasuredCosts(Profile.from_doc(doc), model.expert_hidden, model.inter, model.experts, top_k,
                         model.shared_inter)


def _silicon(cluster: ClusterSpec, model: MoEModel, top_k: int, doc: Any) -> CostModel:
    return SiliconCosts(SiliconProfile(doc["name"], doc), _roofline(cluster, model, top_k, None), model, top_k)


COST_MODELS.register("roofline", _roofline, help="roofline on the GPU's catalogue figures (datasheet, published)")
COST_MODELS.register("measured", _measured, help="a profile of MoE pieces timed with PyTorch (moesim.calibrate)")
COST_MODELS.register("silicon", _silicon, help="kernel tables measured by others (aiconfigurator), fitted")
