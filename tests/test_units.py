import pytest

from moesim.util.units import parse_quantity


@pytest.mark.parametrize("text,kind,value", [
    ("160GB/s", "bandwidth", 160e9), ("400Gbps", "bandwidth", 50e9), ("3us", "time", 3e-6),
    ("1.5ms", "time", 1.5e-3), ("80GiB", "bytes", 80 * 2**30), ("141GB", "bytes", 141e9),
    (5e10, "bandwidth", 5e10), ("989TFLOPS", "flops", 989e12), ("2", "time", 2.0),
])
def test_units_parse_to_si(text, kind, value):
    assert parse_quantity(text, kind) == pytest.approx(value)


@pytest.mark.parametrize("text,kind", [("fast", "bandwidth"), ("3 parsecs", "time"), ("10GB", "bandwidth"),
                                       (True, "time")])
def test_bad_units_name_the_accepted_forms(text, kind):
    with pytest.raises(ValueError):
        parse_quantity(text, kind)
