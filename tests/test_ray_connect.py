"""Joining a Ray cluster (--executor ray --address): a wrong address fails in seconds with one line naming
the fix, a missing Ray Client says which extra, and the workers get this moesim through runtime_env."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from moesim.cli import main
from moesim.exec import ray_executor
from moesim.util.errors import MoesimError


class FakeRay:
    def __init__(self, error=None, failures=None):
        self.error, self.calls, self.shutdowns = error, [], 0
        self.failures = failures  # fail this many times, then connect

    def init(self, **kw):
        self.calls.append(kw)
        if self.error and (self.failures is None or len(self.calls) <= self.failures):
            raise self.error

    def shutdown(self):
        self.shutdowns += 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_an_unreachable_address_fails_at_once_naming_the_fix():
    t0 = time.monotonic()
    with pytest.raises(MoesimError, match="no Ray cluster answers there"):
        ray_executor.connect(FakeRay(), f"ray://127.0.0.1:{closed_port()}", 0)
    assert time.monotonic() - t0 < ray_executor.CONNECT_TIMEOUT_S


def test_a_listening_cluster_gets_moesim_shipped_and_missing_client_is_named():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        address = f"ray://127.0.0.1:{srv.getsockname()[1]}"
        fake = FakeRay()
        ray_executor.connect(fake, address, 0)
        mods = fake.calls[0]["runtime_env"]["py_modules"]
        assert fake.calls[0]["address"] == address and mods[0].endswith("moesim")
        with pytest.raises(MoesimError, match=r"pip install 'ray\[client\]'"):
            ray_executor.connect(FakeRay(ImportError("No module named 'grpc'")), address, 0)


def test_a_client_server_that_dies_at_start_is_retried_then_named(monkeypatch):
    monkeypatch.setattr(ray_executor, "CLIENT_RETRY_S", 0.0)
    died = ConnectionError("Initialization failure from server: RuntimeError: Starting Ray client server failed.")
    fake = FakeRay(died, failures=1)
    ray_executor.connect(fake, "auto", 0)  # the second attempt connects
    assert len(fake.calls) == 2 and fake.shutdowns == 1
    always = FakeRay(died)
    with pytest.raises(MoesimError, match="Starting Ray client server failed"):
        ray_executor.connect(always, "auto", 0)
    assert len(always.calls) == 1 + ray_executor.CLIENT_RETRIES
    other = FakeRay(ConnectionError("token rejected"))  # any other refusal is said at once
    with pytest.raises(MoesimError, match="token rejected"):
        ray_executor.connect(other, "auto", 0)
    assert len(other.calls) == 1


def test_cli_plan_with_a_wrong_address_is_one_line_exit_2(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    r = CliRunner().invoke(main, ["sweep", "sweeps/v3-nodes-placement.yaml", "-o", str(tmp_path), "--executor", "ray",
                                  "--address", f"ray://127.0.0.1:{closed_port()}"])
    assert r.exit_code == 2 and "no Ray cluster answers there" in r.output and "Traceback" not in r.output


def test_a_token_at_hand_turns_token_authentication_on(tmp_path):
    env = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "none")}
    assert not ray_executor.use_token_auth(env) and "RAY_AUTH_MODE" not in env
    (tmp_path / "tok").write_text("x" * 64)
    env = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "tok")}
    assert ray_executor.use_token_auth(env) and env["RAY_AUTH_MODE"] == "token"
    env = {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x"}
    assert not ray_executor.use_token_auth(env) and env["RAY_AUTH_MODE"] == "disabled"  # the user's choice stands


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ray") is None, reason="Ray's CLI is not installed (pip install 'moesim[ray]')")
def test_a_sweep_runs_on_a_cluster_started_by_ray_start(tmp_path):
    """A real head node (`ray start --head`, token authentication as Ray starts it) and moesim joining it
    through Ray Client, as the README documents: every point runs there."""
    port = closed_port()
    (tmp_path / "base.yaml").write_text("seed: 1\nmodel: {base: deepseek-v3, num_hidden_layers: 5}\n"
                                        "cluster: {gpu: h800, nodes: 1, gpus_per_node: 8}\n"
                                        "workload: {tokens_per_gpu: 64}\n")
    (tmp_path / "sw.yaml").write_text("base: base.yaml\ngrid: {placement.kind: [contiguous, eplb]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    # a local Ray left by an earlier test (a sweep stopped by SIGTERM) can make the client server fail to
    # start: stop it first (this test owns the machine's Ray while it runs)
    subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120, env=env)
    start = subprocess.run(["ray", "start", "--head", "--port=0", f"--ray-client-server-port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats"], capture_output=True, text=True,
                           timeout=180, env=env)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        run = subprocess.run([sys.executable, "-m", "moesim", "sweep", str(tmp_path / "sw.yaml"), "-o",
                              str(tmp_path / "out"), "--executor", "ray", "--address", f"ray://127.0.0.1:{port}",
                              "--json"], capture_output=True, text=True, timeout=300, env=env)
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["ran"] == 2 and summary["failed"] == 0
