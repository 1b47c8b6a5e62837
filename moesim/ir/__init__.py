"""Stage programs (the engine's input) and the builders that make them from resolved figures."""
