"""Sweep points as Ray tasks (``pip install 'moesim[ray]'``), on a local Ray instance or an existing
cluster (``address``). Same interface as the local pool: (item, result) pairs as tasks finish; stopped
early (Ctrl-C, or the caller stops iterating), it cancels what has not finished.

Tasks are self-contained (``bundle``): they carry the resolved scenario and the bytes of the files it
reads, so workers need no shared filesystem and no copy of the scenario files; on an existing cluster the
moesim package itself goes with the job (``runtime_env``), so workers need only its dependencies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from moesim.util.errors import MoesimError


def _ray():
    try:
        import ray
    except ImportError:
        raise MoesimError("--executor ray needs Ray: pip install 'moesim[ray]' (or use --executor local)") from None
    return ray


class RayExecutor:
    """Run items as Ray tasks. address: an existing cluster (``auto``, ``ray://host:10001``); None starts a
    local instance with ``jobs`` CPUs (0: all) for this run and stops it afterwards."""

    self_contained = True

    def __init__(self, address: str | None = None, jobs: int = 0) -> None:
        if address is not None:
            use_token_auth(os.environ)  # before Ray is imported: its client reads the mode once
        self.ray, self.address, self.jobs = _ray(), address, jobs

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        ray = self.ray
        items = list(items)
        if not items:
            return
        started = not ray.is_initialized()
        if started:
            with _keep_signal_handlers():
                connect(ray, self.address, self.jobs)
        task = ray.remote(num_cpus=1)(_call)
        refs = {task.remote(fn, item): item for item in items}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    yield refs.pop(ref), ray.get(ref)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


@contextlib.contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """``ray.init`` installs its C++ fatal-signal handler for SIGTERM (it prints a stack dump and dies with
    the signal), under Python's back: re-install the Python-level handlers afterwards, so SIGTERM stays
    moesim's (stop, keep what finished, exit 143). Only from the main thread, where handlers can be set."""
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


CONNECT_TIMEOUT_S = 10.0  # a cluster that does not answer within this is reported, not waited for


# Ray Client's proxy starts one server process per client; where that process dies at start (seen on a
# 2-core machine right after `ray start`), the connection fails with this text and a new one usually works
CLIENT_SERVER_DIED = "Starting Ray client server failed"
CLIENT_RETRIES = 2
CLIENT_RETRY_S = 2.0


def connect(ray: Any, address: str | None, jobs: int) -> None:
    """``ray.init`` for this run: a local instance (``address`` None), or the cluster at ``address`` after a
    TCP probe of its port (a wrong address fails in seconds, not after Ray's minutes of retries), with this
    moesim shipped to the workers (``runtime_env`` ``py_modules``: workers need its dependencies, not a
    moesim install). MoesimError naming the fix where the address is unreachable or Ray Client is missing."""
    if address is None:
        ray.init(num_cpus=jobs or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    _probe(address)
    import moesim
    env = {"py_modules": [str(Path(moesim.__file__).parent)]}
    token = use_token_auth(os.environ)  # (again, for callers that imported Ray themselves)
    for attempt in range(1 + CLIENT_RETRIES):
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=env)
            return
        except ImportError as exc:  # ray:// needs Ray Client (grpcio): ray[client]
            raise MoesimError(f"--address {address}: Ray Client is not installed ({exc}): pip install "
                              "'ray[client]' (moesim's ray extra includes it)") from None
        except ConnectionError as exc:
            if CLIENT_SERVER_DIED in str(exc) and attempt < CLIENT_RETRIES:  # the proxy starts a new one
                ray.shutdown()
                time.sleep(CLIENT_RETRY_S * (attempt + 1))
                continue
            hint = ("" if token else "; a cluster with token authentication (the default of `ray start` since Ray "
                    "2.5x) needs its token here: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
            raise MoesimError(f"--address {address}: {exc}{hint}") from None


def use_token_auth(environ: MutableMapping[str, str]) -> bool:
    """Whether this process authenticates to the cluster with a token. Ray >= 2.5x starts clusters with
    token authentication but its client sends the token only with ``RAY_AUTH_MODE=token``: where the mode
    is unset and a token is at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``, as
    Ray looks for it), set it (a cluster without authentication ignores the token)."""
    mode = environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    path = environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if environ.get("RAY_AUTH_TOKEN") or Path(path).is_file():
        environ["RAY_AUTH_MODE"] = "token"
        return True
    return False


def _probe(address: str) -> None:
    """Refuse an address whose host and port do not accept a TCP connection within CONNECT_TIMEOUT_S."""
    if address in ("auto", "local"):
        return
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    default = 10001 if address.startswith("ray://") else 6379  # Ray Client server / GCS
    try:
        socket.create_connection((host or "127.0.0.1", int(port or default)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise MoesimError(f"--address {address}: no Ray cluster answers there within {CONNECT_TIMEOUT_S:g} s "
                          f"({exc}): check the host and port (ray start --head prints them; Ray Client listens "
                          "on 10001)") from None


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
