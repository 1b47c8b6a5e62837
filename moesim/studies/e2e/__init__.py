"""End-to-end validation: measured deployments (one converter per source) run through moesim's serving
simulator, and the errors of median TTFT, median TPOT and throughput per GPU, per group of rows."""
