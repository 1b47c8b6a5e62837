"""numba's ``njit`` when numba is installed (``pip install 'moesim[fast]'``), else None. Every compiled
kernel in moesim has a numpy twin that gives the same result bit for bit; tests compare the two, and
``MOESIM_NO_JIT=1`` forces the numpy versions."""

from __future__ import annotations

import os

try:
    if os.environ.get("MOESIM_NO_JIT"):
        raise ImportError
    from numba import njit
except ImportError:  # pragma: no cover (exercised by MOESIM_NO_JIT)
    njit = None

__all__ = ["njit"]
