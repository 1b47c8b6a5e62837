"""The first run after an install (moesim.cli.jitwarm): the command uses the numpy twins while numba's
kernels compile in the background, once; later commands find the marker and use numba."""

from __future__ import annotations

import os

import pytest

from moesim.cli import jitwarm


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIM_CACHE", str(tmp_path))
    monkeypatch.setenv("MOESIM_NO_JIT", "")
    monkeypatch.delenv("MOESIM_NO_JIT")  # restored (absent) after the test
    monkeypatch.setattr(jitwarm, "_numba_version", lambda: "0.0-test")
    real = jitwarm.marker
    monkeypatch.setattr(jitwarm, "marker", lambda root=None: real(tmp_path / "numba"))  # not the package's
    spawned = []
    return spawned, lambda *args, **kw: spawned.append((args, kw))


def test_the_first_run_command_compiles_in_the_background_once(fresh, tmp_path):
    spawned, spawn = fresh
    assert jitwarm.prepare(["run", "s.yaml", "--json"], spawn) and os.environ["MOESIM_NO_JIT"] == "1"
    (cmd,), kw = spawned[0]
    assert cmd[1:3] == ["-m", "moesim.cli.jitwarm"] and kw["start_new_session"]
    assert "MOESIM_NO_JIT" not in kw["env"]  # the background process compiles with numba
    os.environ.pop("MOESIM_NO_JIT")
    assert jitwarm.prepare(["run", "t.yaml"], spawn) and len(spawned) == 1  # one is compiling already
    os.environ.pop("MOESIM_NO_JIT")
    ready = jitwarm.marker()
    ready.write_text("done")
    assert ready.parent == tmp_path / "numba"
    assert not jitwarm.prepare(["run", "s.yaml"], spawn) and "MOESIM_NO_JIT" not in os.environ


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["list", "models"], [], ["serve", "s.yaml"],
                                  ["plan", "p.yaml"]])
def test_help_listing_and_long_commands_start_nothing(fresh, argv):
    """Serving and planning run for minutes on a cold cache: they compile in process, as before."""
    spawned, spawn = fresh
    assert not jitwarm.prepare(argv, spawn) and not spawned and "MOESIM_NO_JIT" not in os.environ


def test_without_numba_or_with_no_jit_set_nothing_changes(fresh, monkeypatch):
    spawned, spawn = fresh
    monkeypatch.setattr(jitwarm, "_numba_version", lambda: None)
    assert not jitwarm.prepare(["run", "s.yaml"], spawn) and not spawned
    monkeypatch.setattr(jitwarm, "_numba_version", lambda: "0.0-test")
    monkeypatch.setenv("MOESIM_NO_JIT", "1")
    assert not jitwarm.prepare(["run", "s.yaml"], spawn) and not spawned


def test_the_warm_up_writes_the_marker_and_drops_its_lock(fresh):
    ready = jitwarm.marker()
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.with_suffix(".lock").write_text("1")
    tiny = {"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2}, "cluster": {"gpu": "h100", "nodes": 1,
                                                                                   "gpus_per_node": 2}}
    jitwarm.warm(ready, [tiny])
    assert ready.exists() and not ready.with_suffix(".lock").exists()


def test_the_warm_up_scenarios_are_valid():
    from moesim.iteration.scenario import scenario_from_dict
    for raw in jitwarm.WARM:  # warm() skips one that fails: check here that none does
        scenario_from_dict({"name": "jit-warm", "seed": 1, **raw})


def test_every_module_that_compiles_kernels_keys_the_marker():
    from moesim.util.fingerprint import PACKAGE
    importers = {f.relative_to(PACKAGE).as_posix() for f in PACKAGE.rglob("*.py")
                 if "from moesim.util.jit import" in f.read_text()}
    assert importers and importers | {"util/jit.py"} == set(jitwarm.KERNELS)
