"""The change-cost probes of the architecture (docs/architecture.md): a placement, an all-to-all algorithm and a
layer kind registered from a test module run through the CLI; unknown names are one line and exit 2; cached
surfaces follow the code that times them; a moesim bug in a sweep point stops the sweep; library calls leave
the caller's process alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from moesim.cli import main
from moesim.comm import ALGORITHMS, AllToAll, Assignments
from moesim.comm.pairs import flows, pairs
from moesim.exec import EXECUTORS
from moesim.hw.costs.loader import COST_MODELS
from moesim.model.layers import LAYER_KINDS, Gqa
from moesim.placement import PLACEMENTS, Placement, Strategy

ROOT = Path(__file__).resolve().parent.parent
SCEN = """\
seed: 1
model: {base: mixtral-8x7b, num_hidden_layers: 2}
cluster: {gpu: h100, nodes: 2, gpus_per_node: 4}
workload: {mode: prefill, tokens_per_gpu: 256, scope: moe_layers}
"""


def reversed_slots(load: np.ndarray, gpus: int, redundant: int = 0, **_: object) -> Placement:
    """A toy strategy: expert e in slot E - 1 - e (the reverse of contiguous)."""
    layers, experts = load.shape
    return Placement(np.tile(np.arange(experts)[::-1], (layers, 1)), gpus)


class ViaGpuZero(AllToAll):
    """A toy algorithm: every copy goes to its expert's GPU through GPU 0 (two hops, the second gated by
    GPU 0's start-up), so its traffic differs from every built-in one."""

    name = "via_gpu_zero"
    one_hop = False

    def flows(self, a: Assignments, topo, dispatch_bytes, combine_bytes, scale, chunks=1):
        src = np.broadcast_to(a.src_gpu[:, None], a.dst.shape)
        sel = a.dst >= 0
        zero = np.zeros(int(sel.sum()), dtype=np.int64)
        hop1 = pairs(src[sel], zero, topo.num_gpus, scale)
        hop2 = pairs(zero, a.dst[sel], topo.num_gpus, scale)

        def both(nbytes):
            (s1, d1, c1), (s2, d2, c2) = hop1, hop2
            from moesim.hw.flows import FlowSet
            keep1, keep2 = s1 != d1, s2 != d2
            return FlowSet.concat([flows(s1[keep1], d1[keep1], c1[keep1] * nbytes, s1[keep1]),
                                   flows(s2[keep2], d2[keep2], c2[keep2] * nbytes, np.zeros(int(keep2.sum())))])
        return both(dispatch_bytes), both(combine_bytes)


class ChunkedLinear(Gqa):
    """A toy linear-attention kind: each query mixes a fixed 64-token chunk and a constant state, so its core
    does not grow with the context and it keeps no per-token cache."""

    name = "toy_linear"

    def attended(self, m, context):
        return min(context, 64)

    def cached(self, m, context):
        return 0.0


@pytest.fixture
def scen(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCEN)
    return path


@pytest.fixture
def toy_placement():
    PLACEMENTS.register("toy_reversed", Strategy(reversed_slots, load_blind=True), help="reverse of contiguous")
    yield "toy_reversed"
    PLACEMENTS.unregister("toy_reversed")


@pytest.fixture
def toy_algorithm():
    ALGORITHMS.register("via_gpu_zero", ViaGpuZero(), help="every copy through GPU 0")
    yield "via_gpu_zero"
    ALGORITHMS.unregister("via_gpu_zero")


@pytest.fixture
def toy_kind():
    LAYER_KINDS.register("toy_linear", ChunkedLinear(), help="chunked linear attention")
    yield "toy_linear"
    LAYER_KINDS.unregister("toy_linear")


def _run(args: list[str]) -> dict:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_placement_registered_in_a_test_runs_through_the_cli(scen, toy_placement):
    doc = _run(["run", str(scen), "--set", f"placement.kind={toy_placement}", "--json"])
    base = _run(["run", str(scen), "--json"])
    assert doc["placement"] == toy_placement and base["placement"] == "contiguous"
    # expert e sits where expert E-1-e sat: the per-GPU loads are the contiguous ones reversed
    assert [g["expert_tokens"] for g in doc["gpus"]] != [g["expert_tokens"] for g in base["gpus"]]
    listed = CliRunner().invoke(main, ["list", "placements"]).output
    assert "toy_reversed" in listed and "reverse of contiguous" in listed
    cmp = CliRunner().invoke(main, ["compare", str(scen), "--placements", f"contiguous,{toy_placement}", "--json"])
    assert cmp.exit_code == 0, cmp.output
    assert [row["placement"] for row in json.loads(cmp.stdout)] == ["contiguous", toy_placement]


def test_an_all_to_all_algorithm_registered_in_a_test_runs_through_the_cli(scen, toy_algorithm):
    doc = _run(["run", str(scen), "--set", f"comm.algorithm={toy_algorithm}", "--json"])
    flat = _run(["run", str(scen), "--set", "comm.algorithm=flat", "--json"])
    assert doc["comm"]["algorithm_used"] == toy_algorithm
    # every copy crosses to GPU 0 first: GPU 0 receives far more than under one-hop sends
    assert doc["totals"]["inter_node_bytes"] != flat["totals"]["inter_node_bytes"]
    assert doc["iteration_time_s"] > flat["iteration_time_s"]


def test_a_layer_kind_registered_in_a_test_runs_through_the_cli(tmp_path, toy_kind):
    """Qwen3-30B-A3B decode, whole model: every other block of the toy kind halves the KV cache (it keeps none)
    and shortens the attention core (it reads 64 tokens, not the 8,192-token context)."""
    path = tmp_path / "d.yaml"
    path.write_text("seed: 1\nmodel: {base: qwen3-30b-a3b, num_hidden_layers: 4}\n"
                    "cluster: {gpu: h100, nodes: 1, gpus_per_node: 8}\n"
                    "workload: {mode: decode, tokens_per_gpu: 64, context_tokens: 8192}\n")
    hybrid = ["--set", f"model.attention_kinds=[{toy_kind}, full, {toy_kind}, full]"]
    doc = _run(["run", str(path), *hybrid, "--json"])
    base = _run(["run", str(path), "--json"])
    assert doc["attention_kind"] == f"{toy_kind}+gqa" and base["attention_kind"] == "gqa"
    assert doc["memory_per_gpu"]["kv_cache_bytes"] == pytest.approx(base["memory_per_gpu"]["kv_cache_bytes"] / 2)
    assert doc["totals"]["stages"]["attention_core"] < base["totals"]["stages"]["attention_core"]
    assert "toy_linear" in CliRunner().invoke(main, ["list", "layer-kinds"]).output
    bad = CliRunner().invoke(main, ["run", str(path), "--set", "model.attention_kinds=[full, nope, full, full]"])
    assert bad.exit_code == 2 and "model.attention_kinds.1: unknown attention kind 'nope'" in bad.output


@pytest.mark.parametrize("field, value, said", [
    ("placement.kind", "eplbb", "unknown placement 'eplbb' (did you mean 'eplb'?)"),
    ("comm.algorithm", "hierarchic", "unknown all-to-all algorithm 'hierarchic' (did you mean 'hierarchical'?)"),
])
def test_unknown_registry_names_are_one_line_and_exit_2(scen, field, value, said):
    r = CliRunner().invoke(main, ["run", str(scen), "--set", f"{field}={value}"])
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and field in line and said in line and str(scen) in line


def test_cli_choices_read_the_registries(toy_placement):
    from moesim.cli.types import EXECUTOR, PLACEMENT_LIST
    assert toy_placement in PLACEMENT_LIST.choices and set(EXECUTOR.choices) == set(EXECUTORS.names())
    done = [c.value for c in PLACEMENT_LIST.shell_complete(None, None, "contiguous,toy")]
    assert done == ["contiguous,toy_reversed"]


def test_every_registry_name_is_documented():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    from moesim.routing.rules import RULES
    from moesim.serve.engines import ENGINES
    from moesim.serve.policies import SCHEDULERS
    for reg in (PLACEMENTS, ALGORITHMS, RULES, COST_MODELS, EXECUTORS, LAYER_KINDS, SCHEDULERS, ENGINES):
        missing = [n for n in reg.names() if f"`{n}`" not in doc]
        assert not missing, f"docs/architecture.md does not name the {reg.what}s {missing}"


def _serve(pkg_root: Path, cache: Path, scenario: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(pkg_root), "MOESIM_CACHE": str(cache), "MOESIM_NO_JIT": "1"}
    code = ("import moesim, sys; root = sys.argv.pop(1); assert moesim.__file__.startswith(root), moesim.__file__; "
            "from moesim.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", code, str(pkg_root), "serve", str(scenario), "-j", "1", "--json"],
                         env=env, capture_output=True, text=True, cwd=pkg_root)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)["ttft_s"]["mean"], len(list((cache / "surfaces").glob("*.json")))


def test_a_changed_cost_function_rebuilds_the_cached_surface(tmp_path):
    """The serving-surface cache is keyed by the code that times it: a copy of the package whose roofline
    kernels take 10x longer must not be answered from the unmodified package's cache."""
    pkg = tmp_path / "pkg"
    shutil.copytree(ROOT / "moesim", pkg / "moesim", ignore=shutil.ignore_patterns("__pycache__"))
    scenario = tmp_path / "s.yaml"
    scenario.write_text("seed: 3\nmodel: {base: mixtral-8x7b, num_hidden_layers: 2}\n"
                        "cluster: {gpu: h200, nodes: 1, gpus_per_node: 1}\n"
                        "serving: {arrival: {kind: poisson, rate_per_s: 2}, requests: 40,\n"
                        "  input_tokens: {kind: constant, value: 256}, output_tokens: {kind: constant, value: 8}}\n")
    cache = tmp_path / "cache"
    ttft, built = _serve(pkg, cache, scenario)
    again, built_again = _serve(pkg, cache, scenario)
    assert (again, built_again) == (ttft, built)  # unchanged code: answered from the cache, nothing new built
    roofline = pkg / "moesim" / "hw" / "costs" / "roofline.py"
    text = roofline.read_text()
    slow = text.replace("return self.kernel_s + np.maximum(ft, mt)", "return 10 * (self.kernel_s + np.maximum(ft, mt))")
    assert slow != text
    roofline.write_text(slow)
    changed, built_changed = _serve(pkg, cache, scenario)
    assert built_changed > built and changed > 5 * ttft


def test_a_moesim_bug_in_a_sweep_point_stops_the_sweep_with_exit_3(tmp_path, scen, monkeypatch):
    from moesim.iteration import run as run_mod
    from moesim.iteration.invariants import InvariantError
    def broken(*_a, **_kw):
        raise InvariantError("stage times do not add up to the iteration (planted)")

    monkeypatch.setattr(run_mod, "run_scenario", broken)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {scen}\ngrid: {{cluster.nodes: [1, 2]}}\n")
    r = CliRunner().invoke(main, ["sweep", str(sweep), "-o", str(tmp_path / "out"), "-j", "1"])
    assert r.exit_code == 3, r.output
    assert "internal error: InvariantError" in r.output


def test_library_calls_do_not_tune_the_callers_allocator(scen, monkeypatch):
    from moesim import api
    from moesim.util import alloc
    def refuse():
        raise AssertionError("a library call changed the process's allocator")

    monkeypatch.setattr(alloc, "tune", refuse)
    assert api.run(scen).summary.iteration_time_s > 0


def test_charts_leave_the_callers_matplotlib_alone(tmp_path):
    """Writing PNGs (report pages, compare, validation) neither switches the process's backend nor opens
    pyplot figures: a notebook that calls the library keeps its own."""
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
from pathlib import Path
from moesim.present import charts, compare
charts.png({{"kind": "line", "title": "t", "series": [{{"name": "a", "x": [1, 2], "y": [1, 2]}}]}})
compare.plot([{{"placement": "a", "redundant_experts": 0, "iteration_time_s": 0.1,
               "gpu_load_max_over_mean": 1.2}}], Path({str(tmp_path / 'c.png')!r}), "t")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["svg", "False"]
