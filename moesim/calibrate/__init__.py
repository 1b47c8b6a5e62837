"""Calibration: measure real MoE layer pieces with PyTorch, fit them, write profiles, validate predictions.

Needs torch (``pip install -e ".[calibrate]"``); the simulator itself never imports this package.
"""
