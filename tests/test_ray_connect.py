"""Joining a Ray cluster (--executor ray --address): a wrong address fails in seconds with one line naming
the fix, a missing Ray Client says which extra, and the workers get this moesim through runtime_env."""

import socket
import time

import pytest
from click.testing import CliRunner

from moesim.cli import main
from moesim.exec import ray_executor
from moesim.util.errors import MoesimError


class FakeRay:
    def __init__(self, error=None):
        self.error, self.calls = error, []

    def init(self, **kw):
        self.calls.append(kw)
        if self.error:
            raise self.error


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


def test_cli_plan_with_a_wrong_address_is_one_line_exit_2(tmp_path):
    pytest.importorskip("ray")
    r = CliRunner().invoke(main, ["sweep", "sweeps/v3-nodes-placement.yaml", "-o", str(tmp_path), "--executor", "ray",
                                  "--address", f"ray://127.0.0.1:{closed_port()}"])
    assert r.exit_code == 2 and "no Ray cluster answers there" in r.output and "Traceback" not in r.output
