"""Studies over many runs: compare, rebalance, sweep, validation against measurements, export."""
