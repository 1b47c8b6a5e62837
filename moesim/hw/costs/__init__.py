"""Cost models of compute: the roofline on GPU figures, measured (calibrate/) profiles and silicon tables."""
