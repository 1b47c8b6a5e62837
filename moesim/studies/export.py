"""Placements in other tools' formats (the launch renderers write them too: moesim.launch)."""

from moesim.launch.placement_file import sglang_expert_location

__all__ = ["sglang_expert_location"]
