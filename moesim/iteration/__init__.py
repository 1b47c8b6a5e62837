"""One iteration: resolve, build, run the engine, summarise, check invariants (``run_scenario``)."""
