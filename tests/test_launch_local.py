"""Local launches for offload scenarios, both ways: llama.cpp's placement flags read as llama.cpp reads them
(offload.llama_cpp) and written back (export-launch --engine llama-cpp), KTransformers' GPU experts by id
(plan first, --kt-num-gpu-experts) and its rule file; every flag checked against the engines' parsers."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import api
from moesim.cli.main import main
from moesim.config.llamacpp import EXPS_REGEX, LlamaCppError, args_for, host_layers, overrides
from moesim.launch import render
from moesim.launch.flags import fixture, problems

ROOT = Path(__file__).resolve().parent.parent
V3_BLOCKS = tuple(range(3, 61))  # DeepSeek-V3: 3 dense blocks, then 58 MoE blocks
OFFLOAD = ["mixtral-8x7b-offload-4090", "deepseek-v3-ktransformers", "deepseek-v2-lite-half-cpu",
           "qwen3-30b-a3b-laptop", "deepseek-v3-offload-h100-pcie", "olmoe-offload-cpu-ref"]


def test_n_cpu_moe_counts_blocks_dense_ones_included():
    assert host_layers("--n-cpu-moe 5", V3_BLOCKS) == [0, 1]  # blocks 3 and 4
    assert host_layers("-ncmoe 3", V3_BLOCKS) == []  # only dense blocks
    assert host_layers("--cpu-moe", V3_BLOCKS) == list(range(58))
    assert host_layers("-ngl 999 --n-cpu-moe=4", V3_BLOCKS) == [0]


def test_override_tensor_first_match_wins_and_whole_layers_only():
    assert host_layers(r"-ot blk\.(1[0-9])\.ffn_.*_exps=CPU", V3_BLOCKS) == [i - 3 for i in range(10, 20)]
    # an earlier override keeps block 4 on a GPU buffer; --n-cpu-moe's later ones do not move it
    assert host_layers(r"-ot blk\.4\.ffn_.*_exps=CUDA0 --n-cpu-moe 6", V3_BLOCKS) == [0, 2]
    with pytest.raises(LlamaCppError, match="block 5: ffn_down_exps on the CPU"):
        host_layers(r"-ot blk\.5\.ffn_down_exps=CPU", V3_BLOCKS)
    assert host_layers(r"-ot exps=CPU", V3_BLOCKS, gated=False) == list(range(58))  # up and down only


@pytest.mark.parametrize("args, match", [
    ("--threads 8", "not one of llama.cpp's expert placement flags"),
    ("-ngl 20 --cpu-moe", "use -ngl all"),
    ("--n-cpu-moe", "needs a value"),
    ("--n-cpu-moe x", "give a number of blocks"),
    ("-ot blk.3", "give PATTERN=BUFFER"),
    ("-ot 'blk(=CPU'", "not a regular expression"),
    ("-ot 'unclosed", "cannot split"),
])
def test_unreadable_flags_are_refused_naming_the_fix(args, match):
    with pytest.raises(LlamaCppError, match=match):
        overrides(args)


@settings(max_examples=60)
@given(st.data())
def test_flags_written_for_a_layer_set_read_back_as_that_set(data):
    dense = data.draw(st.integers(0, 4))
    n = data.draw(st.integers(1, 40))
    blocks = tuple(range(dense, dense + n))
    host = sorted(data.draw(st.sets(st.integers(0, n - 1))))
    args = args_for(host, blocks)
    assert host_layers(" ".join(f"'{a}'" for a in args), blocks) == host
    if host == list(range(len(host))) and 0 < len(host) < n:
        assert args[0] == "--n-cpu-moe"  # a prefix is the short form


def _scenario(tmp_path, offload: dict, name="mixtral-8x7b-offload-4090"):
    raw = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    raw["offload"] = offload
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_llama_cpp_command_is_simulated_as_it_places_experts(tmp_path):
    r = api.run(_scenario(tmp_path, {"llama_cpp": "-ngl 999 --n-cpu-moe 22", "steps": 8}))
    doc = r.doc["offload"]
    assert doc["plan"] == "layers" and doc["cache"] == "static" and doc["miss"] == "cpu"
    # Mixtral: 32 MoE blocks from block 0, the last 10 on the GPU
    assert r.doc["cache"]["hit_rate"] == pytest.approx(10 / 32)
    with pytest.raises(api.ScenarioError, match="offload.llama_cpp.*room for 14 layers"):
        api.run(_scenario(tmp_path, {"llama_cpp": "--n-cpu-moe 2"}))
    with pytest.raises(api.ScenarioError, match="leave out cache: lru"):
        api.run(_scenario(tmp_path, {"llama_cpp": "--cpu-moe", "cache": "lru"}))


def test_plan_first_keeps_the_lowest_ids_of_every_layer(tmp_path):
    r = api.run(_scenario(tmp_path, {"plan": "first", "gpu_experts_per_layer": 2, "cache": "static", "miss": "cpu",
                                     "steps": 8}))
    assert r.doc["cache"]["slots_per_gpu"] == 2 * 32
    with pytest.raises(api.ScenarioError, match="gpu_experts_per_layer.*use at most 3"):
        api.run(_scenario(tmp_path, {"plan": "first", "gpu_experts_per_layer": 8, "miss": "cpu"}))


@pytest.mark.parametrize("name", OFFLOAD)
@pytest.mark.parametrize("engine", ["llama-cpp", "ktransformers"])
def test_every_shipped_offload_scenario_renders_with_the_engines_own_flags(name, engine):
    launch = render(api.load_scenario(ROOT / "scenarios" / f"{name}.yaml"), engine)
    engine_flags = {"llama-cpp": ("llama.cpp", "llama-cpp-python-0.3.36"), "ktransformers": ("sglang", "0.5.23")}
    for c in launch.commands:
        assert problems(c.args, *engine_flags[engine]) == []
    assert "exec " in launch.script() and launch.doc()["placement"]["summary"]


def test_the_placement_a_launch_asks_for_is_what_moesim_simulates(tmp_path):
    """A plan llama.cpp can say exactly (whole layers, static, CPU misses) comes back as the same run."""
    path = _scenario(tmp_path, {"plan": "layers", "cpu_moe_layers": [0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                                      17, 18, 19, 20], "cache": "static", "miss": "cpu",
                                "steps": 8})
    res = CliRunner().invoke(main, ["export-launch", str(path), "--engine", "llama-cpp", "-o", str(tmp_path / "o"),
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    argv = doc["commands"][0]["argv"]
    assert argv[argv.index("-ot") + 1] == (r"blk\.(0|1|5|6|7|8|9|10|11|12|13|14|15|16|17|18|19|20)" + EXPS_REGEX
                                           + "=CPU")
    assert doc["notes"] == []  # nothing approximated
    spec = argv[argv.index("-ot"):argv.index("-ot") + 2]
    again = api.run(_scenario(tmp_path, {"llama_cpp": " ".join(f"'{a}'" for a in spec), "steps": 8}))
    assert again.doc["tokens_per_s"] == api.run(path).doc["tokens_per_s"]


def test_ktransformers_gpu_experts_and_its_rule_file(tmp_path):
    path = _scenario(tmp_path, {"plan": "first", "gpu_experts_per_layer": 16, "cache": "static", "miss": "cpu"},
                     "deepseek-v2-lite-half-cpu")
    launch = render(api.load_scenario(path), "ktransformers")
    argv = list(launch.commands[0].argv)
    assert argv[argv.index("--kt-num-gpu-experts") + 1] == "16" and not any("plan" in n for n in launch.notes)
    rules = yaml.safe_load(launch.files["optimize-rules-gpu-experts.yaml"])
    assert rules[0]["replace"]["kwargs"]["generate_op"] == "KExpertsMarlin"
    blocks = [int(b) for b in rules[0]["match"]["name"].split("(")[1].split(")")[0].split("|")]
    assert blocks == [1 + i for i in launch.doc()["placement"]["rules_gpu_moe_layers"]]  # V2-Lite: 1 dense block


def test_serving_engines_refuse_an_offload_scenario_and_local_ones_a_serving_one():
    off = api.load_scenario(ROOT / "scenarios" / "mixtral-8x7b-offload-4090.yaml")
    with pytest.raises(api.ScenarioError, match="--engine llama-cpp or ktransformers"):
        render(off, "sglang")
    with pytest.raises(api.ScenarioError, match="no offload section"):
        render(api.load_scenario(ROOT / "scenarios" / "deepseek-v3-serve-h800.yaml"), "llama-cpp")


def _extractor():
    spec = importlib.util.spec_from_file_location("x", ROOT / "tools" / "extract_llamacpp_flags.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_llama_cpp_flag_extractor_reads_arity_and_programs():
    src = '''
    add_opt(common_arg({"-a", "--alpha"}, "help text", [](common_params & p) { p.x = 1; }));
    add_opt(common_arg({"-b", "--beta"}, "N", "help, with a comma", [](common_params & p, int v) { p.y = v; })
        .set_env("B"));
    add_opt(common_arg({"--on"}, {"--no-on"}, string_format("d %s", "x"), [](common_params & p, bool v) {}));
    add_opt(common_arg({"--cli-only"}, "N", "h", [](common_params & p, int v) {}).set_examples({LLAMA_EXAMPLE_CLI}));
    add_opt(common_arg({"--both"}, "h", [](common_params & p) {})
        .set_examples({LLAMA_EXAMPLE_COMMON, LLAMA_EXAMPLE_CLI}));
    add_opt(common_arg({"--not-server"}, "h", [](common_params & p) {}).set_excludes({LLAMA_EXAMPLE_SERVER}));
    '''
    flags = _extractor().extract(src)
    assert {k: v["value"] for k, v in flags.items()} == {"-a": False, "--alpha": False, "-b": True, "--beta": True,
                                                         "--on": False, "--no-on": False, "--both": False}
    fx = fixture("llama.cpp", "llama-cpp-python-0.3.36")
    assert fx["flags"]["--n-cpu-moe"]["value"] and not fx["flags"]["--cpu-moe"]["value"]
    assert fx["flags"]["-ot"]["value"] and "--mlock" not in fx["flags"]  # 0.3.36's tree replaced it (--load-mode)
