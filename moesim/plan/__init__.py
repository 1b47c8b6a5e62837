"""``moesim plan``: the cheapest configuration that meets a target, and the cost/throughput frontier."""

from moesim.plan.planner import Candidate, load_plan, pareto, plan

__all__ = ["Candidate", "load_plan", "pareto", "plan"]
