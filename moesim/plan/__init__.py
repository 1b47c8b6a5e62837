"""Capacity planning on the serving simulation (``moesim plan``)."""

from moesim.plan.planner import pareto, plan, scenario_of
from moesim.plan.spec import PlanSpec, load_plan

__all__ = ["PlanSpec", "load_plan", "pareto", "plan", "scenario_of"]
