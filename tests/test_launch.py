"""Engine launch files (moesim.launch): every flag a renderer writes is one the engine version's own parser
defines (fixtures extracted from SGLang 0.5.23's and vLLM 0.33.0's parsers by tools/extract_engine_flags.py),
for the shipped scenarios and every deployment of the shipped plans; what an engine cannot run is refused
with the field and the fix; the script runs the right command per role and node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from moesim import api
from moesim.cli import main
from moesim.iteration.scenario import scenario_from_dict
from moesim.launch import LAUNCHERS, facts_of, render
from moesim.launch import sglang as sglang_launch
from moesim.launch.flags import fixture, problems
from moesim.plan import load_plan
from moesim.plan.planner import _experts
from moesim.plan.space import deployments, scenario_dict
from moesim.util.errors import ScenarioError

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "scenarios" / "deepseek-v3-serve-h800.yaml"
DISAGG = "serving.deployment={kind: disaggregated, prefill: {gpus: 16}, decode: {gpus: 16, attention_tp: 2}}"
ENGINES = [(e, LAUNCHERS.get(e)) for e in LAUNCHERS.names() if not LAUNCHERS.get(e).local]  # serving engines


def _flags_ok(launch, engine: str, version: str) -> None:
    """Every command's flags are its parser's (the launcher's, or the command's own: Dynamo's frontend)."""
    for c in launch.commands:
        name, ver = c.parser or (engine, version)
        fx = fixture(name, ver)["flags"]
        assert problems(c.args, name, ver) == []
        for word in c.args:
            if word.startswith("--"):
                flag = word.split("=")[0]
                assert flag in fx and not fx[flag]["deprecated"], flag


@pytest.mark.parametrize("name,launcher", ENGINES)
@pytest.mark.parametrize("sets", [[], [DISAGG, "serving.mtp={draft_tokens: 2}", "serving.engine=sglang"],
                                  ["serving.scheduler.chunked_prefill=false", "serving.scheduler.prefix_cache=false",
                                   "serving.scheduler.cuda_graph_batches=[1, 2, 4, 8]"],
                                  ["cluster.nodes=2", "placement.kind=contiguous", "placement.redundant_experts=0"]])
def test_shipped_scenario_flags_are_the_engines(name, launcher, sets):
    if name == "trtllm" and DISAGG in sets:  # decode attention TP 2 inside DP: not a TensorRT-LLM layout
        with pytest.raises(api.ScenarioError, match="attention TP 2 inside DP groups"):
            render(api.load_scenario(SERVE, sets), name)
        sets = [*sets, "serving.deployment={kind: disaggregated, prefill: {gpus: 16}, decode: {gpus: 16}}"]
    launch = render(api.load_scenario(SERVE, sets), name)
    _flags_ok(launch, launcher.engine, launcher.version)
    roles = {c.role for c in launch.commands} - {"frontend"}  # Dynamo's HTTP frontend beside the workers
    assert roles == {"prefill", "decode"} if DISAGG in sets else roles == {"aggregated"}


@pytest.mark.parametrize("plan_file", sorted((ROOT / "plans").glob("*.yaml")), ids=lambda p: p.name)
def test_every_plan_deployment_renders_with_the_engines_flags(plan_file, monkeypatch):
    """Every deployment of the shipped plans (at its largest batch limit), on every engine: rendered with
    flags the engine defines, or refused with a ScenarioError (a shape the engine or the GPU cannot run)."""
    monkeypatch.setattr(sglang_launch, "sglang_expert_location", lambda s: ({"physical_to_logical_map": []}, {}))
    p, where = load_plan(plan_file)
    experts = _experts(p, str(where.parent))
    rendered = 0
    for d in deployments(p):
        try:
            s = scenario_from_dict(scenario_dict(p, d, max(p.search.max_batch), experts), base_dir=str(where.parent))
        except ScenarioError:
            continue
        try:
            facts = facts_of(s)  # once per deployment: the engines' renderers share it
        except ScenarioError:
            continue
        for _, launcher in ENGINES:
            try:
                launch = launcher.render(facts)
            except ScenarioError:
                continue
            _flags_ok(launch, launcher.engine, launcher.version)
            rendered += 1
    assert rendered >= len(ENGINES) * 3


def test_problems_names_what_the_parser_would_refuse():
    v = "0.5.23"
    assert problems(["--tp-size", "8", "--enable-eplb"], "sglang", v) == []
    assert problems(["--no-such-flag"], "sglang", v) == ["--no-such-flag: not a flag of sglang 0.5.23"]
    assert problems(["--enable-dp-attention"], "sglang", v) == ["--enable-dp-attention: deprecated in sglang 0.5.23"]
    assert "not one of" in problems(["--deepep-mode", "fast"], "sglang", v)[0]
    assert problems(["--tp-size"], "sglang", v) == ["--tp-size: needs a value"]
    assert problems(["--enable-eplb=1"], "sglang", v) == ["--enable-eplb: takes no value"]
    assert problems(["--eplb-config", '{"num_redundant_experts": 8}'], "vllm", "0.33.0") == []
    assert problems(["--eplb-config", '{"redundant": 8}'], "vllm", "0.33.0") == \
        ["--eplb-config: 'redundant' is not a field of its config"]
    assert problems(["--no-enable-prefix-caching"], "vllm", "0.33.0")  # vLLM 0.33 spells it --disable-prefix-caching


def test_sglang_uses_its_attention_dp_and_placement_file():
    launch = render(api.load_scenario(SERVE), "sglang")
    args = launch.commands[0].args
    assert args[args.index("--attn-dp-size") + 1] == "32" and "--enable-dp-attention" not in args
    assert args[args.index("--ep-num-redundant-experts") + 1] == "32"
    rows = json.loads(launch.files["placement-aggregated.json"])["physical_to_logical_map"]
    assert len(rows) == 61 and all(len(r) == 256 + 32 for r in rows)  # every layer, E + redundant slots
    assert args[args.index("--nnodes") + 1] == "4" and "$NODE_RANK" in args


def test_placement_for_a_model_sglang_cannot_place_is_refused():
    s = api.load_scenario(ROOT / "scenarios" / "mixtral-8x7b-a100.yaml", ["placement.kind=eplb"])
    with pytest.raises(ScenarioError) as err:
        render(s, "sglang")
    assert err.value.path == "placement.kind" and "mixtral" in err.value.problem
    render(s, "vllm")  # vLLM balances online: no placement file to ignore


def test_layer_count_unlike_the_checkpoint_is_refused():
    s = api.load_scenario(SERVE, ["model.num_hidden_layers=13"])
    with pytest.raises(ScenarioError) as err:
        render(s, "sglang")
    assert err.value.path == "model.num_hidden_layers" and "61" in err.value.fix


def test_vllm_refuses_moe_tp_inside_ep_groups():
    s = api.load_scenario(ROOT / "scenarios" / "qwen3-30b-a3b-engines-h100.yaml",
                          ["workload.attention_tp=4", "workload.moe_tp=2"])
    with pytest.raises(ScenarioError) as err:
        render(s, "vllm")
    assert err.value.path == "workload.moe_tp"


def test_export_launch_script_runs_each_roles_command(tmp_path):
    out = tmp_path / "l"
    r = CliRunner().invoke(main, ["export-launch", str(SERVE), "--engine", "vllm", "-o", str(out), "--set", DISAGG])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "launch.json").read_text())
    assert [c["role"] for c in doc["commands"]] == ["prefill", "prefill", "decode", "decode"]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vllm").write_text('#!/bin/sh\necho "$@"\n')
    (fake / "vllm").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "ROLE": "decode", "NODE_RANK": "1",
           "HEAD_ADDR": "10.0.0.9"}
    ran = subprocess.run(["bash", str(out / "launch.sh")], env=env, capture_output=True, text=True, check=True)
    words = ran.stdout.split()
    assert words[words.index("--data-parallel-start-rank") + 1] == "4"  # node 1 of a TP2 instance: 8 GPUs / 2
    assert "--headless" in words and "10.0.0.9" in words and "deepep_low_latency" in words
    bad = subprocess.run(["bash", str(out / "launch.sh")], env={**env, "ROLE": "nope"}, capture_output=True)
    assert bad.returncode == 2


def test_plan_emit_needs_an_output_folder():
    r = CliRunner().invoke(main, ["plan", str(ROOT / "plans" / "aic-compare-v3-h100.yaml"), "--emit", "sglang"])
    assert r.exit_code == 2 and "--emit" in r.output and "-o DIR" in r.output


def test_export_launch_refusal_is_one_line_naming_the_file(tmp_path):
    r = CliRunner().invoke(main, ["export-launch", str(ROOT / "scenarios" / "mixtral-8x7b-a100.yaml"), "--engine",
                                  "sglang", "-o", str(tmp_path), "--set", "placement.kind=eplb"])
    assert r.exit_code == 2 and "mixtral-8x7b-a100.yaml: placement.kind:" in r.output
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_dynamo_runs_sglang_0_5_21_workers_behind_its_frontend():
    """Dynamo 1.6.1 pins SGLang 0.5.21, which spells attention DP --enable-dp-attention --dp-size (no
    --attn-dp-size yet): the extracted parser says so, and the launch follows it."""
    assert problems(["--attn-dp-size", "4"], "dynamo-sglang", "1.6.1") == \
        ["--attn-dp-size: not a flag of dynamo-sglang 1.6.1"]
    launch = render(api.load_scenario(SERVE, [DISAGG]), "dynamo")
    by_role = {c.role: list(c.argv) for c in launch.commands}
    assert by_role["frontend"][:3] == ["python3", "-m", "dynamo.frontend"]
    decode = by_role["decode"]
    assert decode[decode.index("--dp-size") + 1] == "8" and "--enable-dp-attention" in decode  # 16 GPUs, TP 2
    assert decode[decode.index("--disaggregation-transfer-backend") + 1] == "nixl" and "--port" not in decode
    assert any("etcd" in n for n in launch.notes)


def test_trtllm_workers_take_per_rank_limits_and_say_what_is_not_checked():
    s = api.load_scenario(SERVE)
    launch = render(s, "trtllm")
    worker = next(c for c in launch.commands if c.role == "aggregated")
    argv = list(worker.argv)
    f = facts_of(s).roles[0]
    assert "--enable-attention-dp" in argv and argv[argv.index("--expert-parallel-size") + 1] == str(f.ep_size)
    assert int(argv[argv.index("--max-batch-size") + 1]) == -(-f.max_running // f.ranks)  # each DP rank's own
    assert any("load-balancer slots" in n for n in launch.notes)  # EPLB: an engine option, named, not written
    assert launch.version == "1.3.0rc29" and worker.nodes == "head"  # 4 nodes: MPI starts the others


def test_plan_emit_refuses_a_local_engine_before_planning(tmp_path):
    r = CliRunner().invoke(main, ["plan", str(ROOT / "plans" / "aic-compare-v3-h100.yaml"), "-o", str(tmp_path),
                                  "--emit", "llama-cpp"])
    assert r.exit_code == 2 and "emit one of sglang, vllm, trtllm, dynamo" in r.output
    assert not list(tmp_path.iterdir())  # refused before any work
