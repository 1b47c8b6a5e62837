"""Issue 34's message families: user input that ended in exit 3 (a traceback's summary) now ends in exit 2
with one line naming the place and the fix, before any work; results are written atomically and the
folders they go to are checked first."""

import errno
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.util.files import write_atomic

ROOT = Path(__file__).resolve().parent.parent
SCEN = ROOT / "scenarios" / "mixtral-8x7b-a100.yaml"
PLAN = ROOT / "plans" / "aic-compare-v3-h100.yaml"


def _one_line(r, *want: str) -> None:
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("error:") and "Traceback" not in r.output and "internal error" not in r.output
    for w in want:
        assert w in line, line


def test_a_number_of_5000_digits_is_one_line():
    r = CliRunner().invoke(main, ["check", str(SCEN), "--set", "seed=" + "9" * 5000])
    _one_line(r, "a number moesim cannot read")


@pytest.mark.parametrize("edit, want", [
    (lambda p: p["search"].update(nodes=[0]), "search.nodes.0"),
    (lambda p: p["scenario"].update(router="fast"), "scenario.router: must be a mapping"),
    (lambda p: p["scenario"].update(cluster=[1]), "scenario.cluster: must be a mapping"),
    (lambda p: p["scenario"].update(rooter={}), "did you mean 'router'"),
    (lambda p: p.update(serch=p.pop("search")), "did you mean 'search'"),
    (lambda p: p["search"].update(max_bach=[8]), "did you mean 'max_batch'"),
])
def test_bad_plan_files_are_named_before_planning(tmp_path, edit, want):
    plan = yaml.safe_load(PLAN.read_text())
    edit(plan)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    _one_line(CliRunner().invoke(main, ["plan", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "o")]), want)
    assert not (tmp_path / "o").exists()


def test_a_surface_grid_of_zero_or_negative_tokens_is_refused():
    r = CliRunner().invoke(main, ["check", str(ROOT / "scenarios" / "deepseek-v3-serve-h800.yaml"), "--set",
                                  "serving.surface.prefill_tokens=[0, -1]"])
    _one_line(r, "serving.surface.prefill_tokens.0")


def test_folders_that_cannot_take_the_results_are_said_before_the_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a regular file where a folder is needed: refused even for root
    _one_line(CliRunner().invoke(main, ["run", str(SCEN), "-o", str(blocker / "out")]), "cannot write the results")
    monkeypatch.setenv("MOESIM_CACHE", str(blocker))
    r = CliRunner().invoke(main, ["serve", str(ROOT / "scenarios" / "mixtral-8x7b-serve-trace-a100.yaml")])
    _one_line(r, "cannot write the surface cache", "--no-cache")


def test_a_failed_write_leaves_neither_a_half_file_nor_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    target.write_text("old")

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_hardware_is_adjusted_one_field_at_a_time(tmp_path):
    """`base:` for GPU and host entries, and --set of one field: a 36 GB laptop without two hand-made files."""
    from moesim import api
    (tmp_path / "s.yaml").write_text(
        "model: {base: qwen3-30b-a3b, weight_dtype: fp8}\n"
        "cluster:\n  gpu: {base: rtx-4090, hbm_bytes: 36GB, name: laptop GPU}\n"
        "  host: {base: workstation-4090, dram_bytes: 36GB}\n  nodes: 1\n  gpus_per_node: 1\n"
        "workload: {mode: decode, tokens_per_gpu: 1, context_tokens: 2048}\n"
        "offload: {plan: hottest, cache: lru, miss: fetch, steps: 4}\n")
    s = api.load_scenario(tmp_path / "s.yaml")
    assert s.cluster.gpu.hbm_bytes == 36e9 and s.cluster.gpu.name == "laptop GPU"
    assert s.cluster.host.dram_bytes == 36e9 and s.cluster.gpu_provenance["hbm_bytes"].startswith("user:")
    assert s.cluster.gpu_provenance["peak_bf16_flops"].startswith("datasheet")  # the rest stays the base's
    one = api.load_scenario(SCEN, ["cluster.gpu.hbm_bytes=40e9"])
    assert one.cluster.gpu.hbm_bytes == 40e9 and one.cluster.gpu.nvlink_bandwidth > 0
    _one_line(CliRunner().invoke(main, ["check", str(SCEN), "--set", "cluster.gpu=my-gpu.yaml"]),
              "no GPU file", "my-gpu.yaml", "moesim list gpus")
    _one_line(CliRunner().invoke(main, ["check", str(SCEN), "--set", "cluster.gpu.hbm_byts=1"]),
              "did you mean 'hbm_bytes'")


def test_absurd_inputs_give_an_error_or_the_same_answer_not_an_absurd_one(tmp_path):
    import numpy as np

    from moesim import api
    _one_line(CliRunner().invoke(main, ["check", str(SCEN), "--set", "cluster.inter_node.oversubscription=1e300"]),
              "cluster.inter_node.oversubscription")
    sets = ["model.num_hidden_layers=4", "workload.tokens_per_gpu=64", "workload.scope=moe_layers"]
    docs = []
    for scale in (1.0, 1e308):  # a uniform histogram of 1e308 counts summed to inf: NaN shares, a segfault
        np.save(tmp_path / "h.npy", np.full((4, 8), scale))
        docs.append(api.run(SCEN, [*sets, f"router.stats={{kind: histogram, path: {tmp_path / 'h.npy'}}}"]).doc)
    assert docs[0]["totals"] == docs[1]["totals"]


def _stop(args: list[str], sig: int, after, tmp_path: Path):
    """Start ``moesim ARGS``, wait until ``after()`` holds (or 60 s), send ``sig``: (exit code, stderr, s)."""
    import signal
    import subprocess
    import sys
    import time
    env = {**os.environ, "MOESIM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "moesim", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not after() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be stopped"
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode(), time.monotonic() - t0


@pytest.mark.slow  # a child process stopped or killed mid-run: seconds; CI runs it
def test_sigterm_stops_a_sweep_as_ctrl_c_does_and_keeps_what_finished(tmp_path):
    import signal
    (tmp_path / "base.yaml").write_text("model: {base: mixtral-8x7b, num_hidden_layers: 4}\n"
                                        "cluster: {gpu: a100-80gb, nodes: 1, gpus_per_node: 8}\n"
                                        "workload: {tokens_per_gpu: 256}\n")
    seeds = ", ".join(str(i) for i in range(1, 301))
    (tmp_path / "sw.yaml").write_text(f"base: base.yaml\ngrid: {{seed: [{seeds}]}}\n")
    out = tmp_path / "out"
    code, err, took = _stop(["sweep", str(tmp_path / "sw.yaml"), "-o", str(out), "-j", "2"], signal.SIGTERM,
                            lambda: bool(list((out / "points").glob("*.json"))), tmp_path)
    print(f"sweep stopped {took:.2f} s after SIGTERM")
    assert code == 143 and "interrupted" in err and "Traceback" not in err, err
    assert list((out / "points").glob("*.json")) and (out / "results.jsonl").is_file()


@pytest.mark.slow  # a child process stopped or killed mid-run: seconds; CI runs it
def test_ctrl_c_stops_serve_with_130_not_1(tmp_path):
    import signal
    import time
    start = time.monotonic()  # surfaces take minutes from an empty cache: stop it 5 s in, while it builds them
    code, err, took = _stop(["serve", str(ROOT / "scenarios" / "deepseek-v3-serve-h800.yaml"), "-j", "1",
                             "--no-cache"], signal.SIGINT, lambda: time.monotonic() - start > 5, tmp_path)
    print(f"serve stopped {took:.2f} s after Ctrl-C")
    assert code == 130 and "interrupted" in err and "Traceback" not in err and "Aborted" not in err, err


def test_message_families_name_the_file_the_place_and_the_right_fix(tmp_path):
    import json

    import numpy as np
    (tmp_path / "fake.npz").write_text("hello\n")  # a text file under an .npz name
    _one_line(CliRunner().invoke(main, ["check", str(SCEN), "--set",
                                        f"router.stats={{kind: histogram, path: {tmp_path / 'fake.npz'}}}"]),
              "not a NumPy .npz archive", "rename it to its real format")
    np.save(tmp_path / "neg.npy", -np.ones((32, 8)))  # `run` refused these; `stats` said "zero tokens"
    _one_line(CliRunner().invoke(main, ["stats", str(tmp_path / "neg.npy")]), "finite and non-negative")
    serve = str(ROOT / "scenarios" / "deepseek-v3-serve-h800.yaml")
    _one_line(CliRunner().invoke(main, ["serve", serve, "--set", "serving.deployment.ep_gpus=3"]),
              "deepseek-v3-serve-h800.yaml: serving.deployment.ep_gpus")
    moe = {"hidden_size": 64, "moe_intermediate_size": 32, "num_experts_per_tok": 2, "num_hidden_layers": 2,
           "n_routed_experts": [8, 16]}  # an MoE config moesim cannot model (experts differ per layer)
    dense = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    for cfg, fix in ((moe, "describe the model by its fields"), (dense, "point at a Hugging Face MoE config.json")):
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        (tmp_path / "s.yaml").write_text("model: {hf_config: config.json}\ncluster: {gpu: h100}\n")
        _one_line(CliRunner().invoke(main, ["check", str(tmp_path / "s.yaml")]), "model.hf_config", fix)
