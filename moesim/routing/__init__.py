"""Router statistics sources and routing policies."""

from moesim.routing.params import RoutingParams
from moesim.routing.router import route_layer
from moesim.routing.stats import expert_popularity

__all__ = ["RoutingParams", "expert_popularity", "route_layer"]
