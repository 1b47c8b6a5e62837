"""Helpers every layer may use: errors, units, safe loading, files, progress, registries, compiled-kernel
helpers. Imports nothing else of moesim."""
