"""The built-in placement strategies, registered with what each needs and refuses."""

from __future__ import annotations

from moesim.config.schema import Scenario
from moesim.placement.contiguous import contiguous
from moesim.placement.registry import PLACEMENTS, Strategy
from moesim.placement.strategies import (
    affinity,
    affinity_nodes,
    eplb,
    greedy,
    optimal,
    random_placement,
    round_robin,
    time_aware,
)
from moesim.util.errors import ScenarioError

OPTIMAL_MAX_CELLS = 4096  # experts x GPUs the exact MILP is meant for (HiGHS solves these in seconds)


def _eplb_hier(load, gpus, redundant=0, **kw):
    return eplb(load, gpus, redundant, **{**kw, "policy": "hierarchical"})


def _eplb_global(load, gpus, redundant=0, **kw):
    return eplb(load, gpus, redundant, **{**kw, "policy": "global"})


def _affinity_prepare(load, gpus, gpus_per_node, pairs):
    return {"node_rows": affinity_nodes(load, gpus, gpus_per_node, pairs)}


def _check_affinity(s: Scenario, n_group: int) -> None:
    redundant, nodes = s.placement.redundant_experts, s.cluster.nodes
    if redundant % nodes:
        raise ScenarioError(f"affinity keeps replicas inside nodes: {redundant} redundant experts do not split "
                            f"over {nodes} nodes", path="placement.redundant_experts",
                            fix=f"use a multiple of {nodes}")


def _check_hierarchical(s: Scenario, n_group: int) -> None:
    nodes = s.cluster.nodes
    if n_group % nodes or nodes < 2:
        raise ScenarioError(f"hierarchical EPLB packs whole groups onto nodes: {n_group} groups over {nodes} "
                            "node(s) does not work", path="placement.kind",
                            fix="use eplb (picks global when groups do not divide over nodes) or eplb_global")


def _check_optimal(s: Scenario, n_group: int) -> None:
    experts, gpus = s.model.n_routed_experts, s.cluster.num_gpus
    if experts * gpus > OPTIMAL_MAX_CELLS:
        raise ScenarioError(f"the exact optimum is for small cases ({experts} experts x {gpus} "
                            "GPUs is too many)", path="placement.kind",
                            fix=f"use greedy or eplb; optimal needs E x GPUs <= {OPTIMAL_MAX_CELLS}")


PLACEMENTS.register("contiguous", Strategy(contiguous, load_blind=True),
                    help="expert e on GPU e // (E / GPUs); replicas of the hottest experts after")
PLACEMENTS.register("round_robin", Strategy(round_robin, load_blind=True),
                    help="expert e on GPU e mod GPUs (strided)")
PLACEMENTS.register("random", Strategy(random_placement, load_blind=True), help="a random permutation of the slots")
PLACEMENTS.register("greedy", Strategy(greedy, replicas=False),
                    help="heaviest expert first onto the lightest GPU (LPT), no replicas")
PLACEMENTS.register("eplb", Strategy(eplb),
                    help="DeepSeek EPLB: hierarchical when expert groups divide over nodes, else global")
PLACEMENTS.register("eplb_hierarchical", Strategy(_eplb_hier, check=_check_hierarchical),
                    help="DeepSeek EPLB, groups and their replicas kept on one node")
PLACEMENTS.register("eplb_global", Strategy(_eplb_global),
                    help="DeepSeek EPLB with one group and one node (replicas anywhere)")
PLACEMENTS.register("optimal", Strategy(optimal, replicas=False, check=_check_optimal),
                    help="exact minimum of the busiest GPU's load without replicas (MILP; small cases)")
PLACEMENTS.register("affinity", Strategy(affinity, inputs="pairs", prepare=_affinity_prepare, check=_check_affinity),
                    help="co-selected experts on one node, balanced (cuts inter-node copies)")
PLACEMENTS.register("time_aware", Strategy(time_aware, inputs="window"),
                    help="minimises the busiest GPU summed over a window of steps")
