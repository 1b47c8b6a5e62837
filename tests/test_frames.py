"""Results as pandas data frames (pandas optional): the same rows as to_records, and one clear error
without pandas."""

import sys

import pytest

from moesim import api
from moesim.util.errors import MoesimError
from moesim.util.frames import Rows

SCEN = "scenarios/deepseek-v3-decode-h800.yaml"


def test_result_frames_hold_the_records():
    pd = pytest.importorskip("pandas", reason="pandas is not installed (the test extra has it)")
    r = api.run(SCEN, ["workload.scope=moe_layers"])
    frame = r.to_frame()
    assert isinstance(frame, pd.DataFrame) and frame.to_dict("records") == r.to_records()
    assert len(r.to_frame("gpus")) == len(r.to_records("gpus"))
    rows = Rows([{"nodes": 2, "tok_s": 1.0}, {"nodes": 4, "tok_s": 3.0}])
    assert rows.to_frame()["tok_s"].tolist() == [1.0, 3.0] and rows == list(rows)


def test_without_pandas_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(MoesimError, match="pip install pandas"):
        Rows([{"a": 1}]).to_frame()
