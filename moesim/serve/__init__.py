"""Request-level serving simulation on top of the iteration model (``moesim serve``)."""

from moesim.serve.run import ServeResult, serve, simulate_serving

__all__ = ["ServeResult", "serve", "simulate_serving"]
