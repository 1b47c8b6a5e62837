"""Hardware: the topology and its links, and the cost models of compute (``costs``)."""
