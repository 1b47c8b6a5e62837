"""Communication: the all-to-all algorithms and the traffic they put on the topology."""
