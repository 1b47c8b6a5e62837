"""Parse quantities with units into SI numbers.

Internal units: seconds, bytes, bytes per second, FLOP/s. Decimal prefixes (k, M, G, T, P) are powers of
1000, binary ones (Ki, Mi, Gi, Ti) powers of 1024. ``b`` is a bit, ``B`` a byte: ``400Gbps`` is 50e9 B/s.
"""

from __future__ import annotations

import math
import re

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0}
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_QTY = re.compile(_NUM + r"\s*([A-Za-zµ/]*)$")


def _split(text: str) -> tuple[float, str]:
    m = _QTY.match(text.strip())
    if not m:
        raise ValueError(f"cannot read {text!r} as a number with a unit")
    return float(m.group(1)), m.group(2)


def _prefixed(unit: str, bases: dict[str, float]) -> float | None:
    for base, scale in bases.items():
        if unit.endswith(base):
            prefix = unit[: len(unit) - len(base)]
            if prefix in _PREFIX:
                return _PREFIX[prefix] * scale
    return None


def parse_quantity(value: object, kind: str) -> float:
    """Return ``value`` in SI units of ``kind`` ('time', 'bytes', 'bandwidth', 'flops').

    Plain numbers are taken as already in SI units. Raises ValueError with the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a {kind}, got a boolean")
    if isinstance(value, int | float):
        return _simulable(float(value), kind, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {kind} such as {_EXAMPLES[kind]}")
    number, unit = _split(value)
    scale = _UNIT_READERS[kind](unit)
    if scale is None:
        raise ValueError(f"unknown {kind} unit in {value!r}; use e.g. {_EXAMPLES[kind]}")
    return _simulable(number * scale, kind, value)


# the largest value of each kind a simulation can use: past these, sums of times stop advancing in float64
# (a 9e99-minute latency) or rates make every transfer instant (1e30 GB/s). 1e30 bandwidth and flops stay
# allowed as "effectively infinite" (tests and what-ifs use them); the engine's time guard catches the rest
LIMITS = {"time": 1e6, "bytes": 1e21, "bandwidth": 1e30, "flops": 1e30}


def _simulable(x: float, kind: str, given: object) -> float:
    if not math.isfinite(x):
        raise ValueError(f"{given!r} is not a finite {kind}")
    if abs(x) > LIMITS[kind]:
        raise ValueError(f"{given!r} is beyond any real {kind} (at most {LIMITS[kind]:g} in SI units)")
    return x


def _time_unit(unit: str) -> float | None:
    return _TIME.get(unit if unit else "s")


def _bytes_unit(unit: str) -> float | None:
    if unit == "":
        return 1.0
    return _prefixed(unit, {"B": 1.0, "b": 0.125})


def _bandwidth_unit(unit: str) -> float | None:
    if unit == "":
        return 1.0
    if unit.endswith("ps") and not unit.endswith("/s"):
        unit = unit[:-2] + "/s"  # 400Gbps == 400Gb/s
    if not unit.endswith("/s"):
        return None
    return _bytes_unit(unit[:-2])


def _flops_unit(unit: str) -> float | None:
    unit = unit.replace("FLOP/s", "").replace("FLOPS", "").replace("flops", "")
    return _PREFIX.get(unit)


_UNIT_READERS = {"time": _time_unit, "bytes": _bytes_unit, "bandwidth": _bandwidth_unit,
                 "flops": _flops_unit}
_EXAMPLES = {"time": "'3us', '1.5ms' or 2e-6", "bytes": "'80GiB', '141GB' or 8e10",
             "bandwidth": "'160GB/s', '400Gbps' or 5e10", "flops": "'989TFLOPS' or 9.89e14"}
