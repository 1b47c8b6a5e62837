"""Golden summaries of three tiny scenarios (one batch, two micro-batches, training): the same code and
seed must give the same JSON, byte for byte. An intended change regenerates them
(``python -m tests.golden.scenarios``) and lists every changed figure in the commit."""

import pytest

from tests.golden.scenarios import GOLDEN, HERE, summary_json


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_summary_matches_golden(case):
    assert summary_json(case) == (HERE / f"{case}.json").read_text()
