"""EPLB is bit-identical to DeepSeek's reference on its golden outputs (tests/fixtures/eplb-golden), with
numba and on the pure path; the tie order is PyTorch's CPU sort (libstdc++ introsort)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.placement.introsort import descending_order
from moesim.placement.strategies import eplb

GOLDEN = Path(__file__).parent / "fixtures" / "eplb-golden"
CASES = json.loads((GOLDEN / "cases.json").read_text())


def run_case(name: str):
    c, d = CASES[name], np.load(GOLDEN / f"{name}.npz")
    p = eplb(d["weight"], c["gpus"], c["replicas"] - c["experts"], gpus_per_node=c["gpus"] // c["nodes"],
             n_group=c["groups"])
    return p, d


@pytest.mark.parametrize("name", sorted(CASES))
def test_eplb_matches_the_reference_exactly(name):
    p, d = run_case(name)
    assert np.array_equal(p.phy2log, d["phy2log"])
    assert np.array_equal(p.logcnt, d["logcnt"])
    assert np.array_equal(p.log2phy_table(), d["log2phy"])


def test_the_pure_path_matches_too():
    code = ("import sys; sys.path.insert(0, 'tests'); from test_eplb_golden import CASES, run_case; import numpy as np;"
            "print(all(np.array_equal(run_case(n)[0].phy2log, run_case(n)[1]['phy2log']) for n in CASES))")
    env = {**os.environ, "MOESIM_NO_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "True"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=300))
def test_the_tie_order_is_a_descending_permutation(values):
    x = np.array(values, dtype=np.float32)
    order = descending_order(x)
    assert sorted(order.tolist()) == list(range(x.size))
    assert (np.diff(x[order]) <= 0).all()
    if np.unique(x).size == x.size:  # without ties it is the plain descending order
        assert order.tolist() == np.argsort(-x, kind="stable").tolist()


def test_short_inputs_keep_ties_in_index_order():
    # at most 16 items the sort is an insertion sort, which is stable (PyTorch: [1, 2, 0, 3])
    assert descending_order(np.array([1, 2, 2, 1], dtype=np.float32)).tolist() == [1, 2, 0, 3]


def test_a_long_run_of_ties_is_not_in_index_order():
    # PyTorch's CPU sort of 40 equal values (torch 2.13): introsort moves them
    order = descending_order(np.ones(40, dtype=np.float32)).tolist()
    assert order == [30, *range(21, 30), 20, *range(31, 40), 10, *range(1, 10), 0, *range(11, 20)]
