"""Presentation: tables, JSON/CSV, traces and report pages. Reads results, never runs them."""
