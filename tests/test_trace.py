"""The Perfetto / Chrome trace, validated structurally: every slice on a named track, no two slices of a
track overlap (whole nanoseconds), waiting slices only where a stage waited for a resource or partners,
flow arrows in pairs that bind inside their slices and end no earlier than they start, and link-utilisation
counters."""

import json
from collections import defaultdict

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.ir.program import Compute, Parallel
from moesim.present.trace import predecessors

SCEN = """seed: 2
model: {base: deepseek-v3, num_hidden_layers: 6}
cluster: {gpu: h800, nodes: 2, gpus_per_node: 8}
router: {stats: {kind: zipf, alpha: 1.2}}
workload: {tokens_per_gpu: 256, micro_batches: %d}
"""


def trace_of(tmp_path, micro_batches=1) -> list[dict]:
    (tmp_path / "s.yaml").write_text(SCEN % micro_batches)
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml"), "--trace", str(tmp_path / "t.json")])
    assert r.exit_code == 0, r.output
    return json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def ns(x: float) -> int:
    return round(x * 1000)


def validate(events: list[dict]) -> dict[tuple, list[tuple[int, int, str]]]:
    """Assert the structural rules; returns the slices per track."""
    named = {(e["pid"], e["tid"]) for e in events if e["name"] == "thread_name"}
    tracks = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            assert (e["pid"], e["tid"]) in named, e
            assert e["dur"] >= 0
            tracks[(e["pid"], e["tid"])].append((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"]), e["name"]))
    for key, spans in tracks.items():
        spans.sort()
        for (a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
            assert a1 <= b0, f"{key}: {an} [{a0}, {a1}] overlaps {bn} at {b0}"
    ends = defaultdict(list)
    for e in events:
        if e["ph"] in ("s", "f"):
            ends[e["id"]].append(e)
            inside = [s for s in tracks[(e["pid"], e["tid"])] if s[0] <= ns(e["ts"]) <= s[1] and s[2] == e["name"]]
            assert inside, f"flow {e['id']} {e['ph']} binds to no {e['name']} slice"
    assert all(sorted(x["ph"] for x in v) == ["f", "s"] for v in ends.values())
    for fid, pair in ends.items():  # an arrow that lands before it leaves is dropped or drawn backwards
        start, end = (next(ns(x["ts"]) for x in pair if x["ph"] == ph) for ph in ("s", "f"))
        assert end >= start, f"flow {fid} ends at {end} ns, before its start at {start} ns"
    return tracks


def test_the_trace_is_well_formed(tmp_path):
    events = trace_of(tmp_path)
    tracks = validate(events)
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {f"GPU {g}" for g in range(16)} <= names
    assert any(e["ph"] == "s" and e["name"] == "dispatch" for e in events)  # all-to-all arrows
    waiting = [s for spans in tracks.values() for s in spans if s[2].startswith("waiting: ")]
    assert waiting and all(s[2] in ("waiting: dispatch", "waiting: combine") for s in waiting)  # partners only
    counters = [e for e in events if e["ph"] == "C"]
    by_kind = [e for e in counters if e["name"] == "link utilisation by kind"]
    assert by_kind and {"NVLink mean utilisation", "NIC mean utilisation"} <= set(by_kind[0]["args"])
    assert all(0 <= v <= 1.0 + 1e-9 for e in counters for v in e["args"].values())
    assert any(e["name"] == "process_name" and e["args"]["name"] == "links" for e in events)


def test_two_micro_batches_keep_tracks_apart_and_wait_for_the_gpu(tmp_path):
    events = trace_of(tmp_path, micro_batches=2)
    validate(events)
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {f"GPU 0 · mb {m}" for m in (0, 1)} <= names


def test_predecessors_follow_the_program_structure():
    c = lambda n: Compute(n, None)  # noqa: E731
    stages = (c("a"), Parallel(((c("b"), c("c")), (c("d"),))), c("e"))
    # leaves: a b c d e ; b and d follow a; c follows b; e joins c and d
    assert predecessors(stages) == [[], [0], [1], [0], [2, 3]]


@pytest.mark.parametrize("mbs", [1])
def test_times_are_whole_nanoseconds(tmp_path, mbs):
    events = trace_of(tmp_path, mbs)
    assert all(abs(e["ts"] * 1000 - round(e["ts"] * 1000)) < 1e-6 for e in events if "ts" in e)
