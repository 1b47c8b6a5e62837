"""Router statistics sources and routing policies."""

from moesim.routing.params import RoutingParams
from moesim.routing.router import Routed, route, route_layer
from moesim.routing.stats import expert_popularity

__all__ = ["Routed", "RoutingParams", "expert_popularity", "route", "route_layer"]
