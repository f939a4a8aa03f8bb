"""Start and stop local ``slotcache-server`` processes.

``clusterctl up``, the benchmark and the integration tests all need real
server processes on loopback; this is the one implementation they share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from slotcache._tls import TlsOptions
from slotcache.contract import STANDBY_FILE
from slotcache.ctl.certs import LocalCerts
from slotcache.ctl.transport import open_channel

LOOPBACK = "127.0.0.1"
_STANDBY_POLL_S = 0.01
# A readiness poll starts before the server listens: its refused connections
# must not put the channel in gRPC's default one-second reconnect backoff.
_POLL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


SERVER_SCRIPT = "slotcache-server"
SERVER_MODULE = "slotcache_server.main"


def server_command() -> list[str]:
    """How to run slotcache-server with this interpreter's installation.

    The installed console script comes first: its process is then named
    ``slotcache-server`` (in ``ps``, ``top`` and ``pgrep -f slotcache-server``)
    rather than ``python3 -m ...``. Without one (the package imported from a
    source tree), the module runs under this interpreter.
    """
    script = shutil.which(SERVER_SCRIPT, path=str(Path(sys.executable).parent))
    if script is not None:
        return [script]
    return [sys.executable, "-m", SERVER_MODULE]


def wait_serving(address: str, timeout: float, tls: TlsOptions | None = None) -> bool:
    """Poll the standard health service until it reports SERVING or ``timeout`` passes.

    Without ``tls`` it connects as the rest of clusterctl does (its TLS flags).
    """
    deadline = time.monotonic() + timeout
    channel = open_channel(address, _POLL_OPTIONS) if tls is None else _tls_channel(address, tls)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    return False


class ServerProcess:
    """One ``slotcache-server`` child process on loopback.

    Always stop it (``with`` does): a leaked server would hold its port and
    memory after the caller is gone.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        host: str = LOOPBACK,
        cluster: bool = False,
        bus_port: int | None = None,
        tls: LocalCerts | None = None,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self.port = port or free_port(host)
        self.cluster = cluster
        # Picked freely rather than as port + 10000, which may be out of range or taken.
        self.bus_port = (bus_port or free_port(host)) if cluster else 0
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.log_path = log_path or data_dir / "server.log"
        # With certificates, the client port is TLS only (and so is the bus in cluster mode).
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the client port."""
        return f"{self.host}:{self.port}"

    @property
    def bus_address(self) -> str:
        """``host:bus_port`` of the cluster bus (cluster mode only)."""
        return f"{self.host}:{self.bus_port}"

    @property
    def pid(self) -> int:
        """The process id; the process must have been started."""
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self, ready_timeout: float = 15.0) -> ServerProcess:
        """Start the process and wait until it serves; raise with its log if it does not.

        A port picked automatically can be taken by someone else before the
        server binds it; then a new port is tried.
        """
        for _ in range(3):
            if self._start_once(ready_timeout):
                return self
            # The metrics port follows the client port (+1000), so it can be taken too.
            log = self.log()
            if not (self._auto_port and ("cannot listen" in log or "cannot serve metrics" in log)):
                break
            self.port = free_port(self.host)
            if self.cluster:
                self.bus_port = free_port(self.host)
        raise RuntimeError(f"slotcache-server on {self.address} did not start:\n{self.log()}")

    def _start_once(self, ready_timeout: float) -> bool:
        self.spawn()
        if self.wait_ready(ready_timeout):
            return True
        self.kill()
        return False

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to serve.

        Several nodes can then boot in parallel (``clusterctl up``); call
        :meth:`wait_ready` afterwards. The process runs in its own session
        with no stdin, so Ctrl-C in the caller's terminal does not reach it
        and it survives the caller's exit.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                start_new_session=True,
            )
        return self.proc

    def command(self) -> list[str]:
        """The server's command line; a subclass may wrap it (e.g. in a network namespace)."""
        return [
            *server_command(),
            "--host",
            self.host,
            *self._port_args(),
            "--data-dir",
            str(self.data_dir),
            *(
                ["--cluster-enabled", "yes", "--bus-port", str(self.bus_port)]
                if self.cluster
                else []
            ),
            *self.extra_args,
        ]

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), *self.tls.server_flags(self.cluster)]

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the spawned process serves; False if it exits or ``timeout`` passes."""
        assert self.proc is not None, "server not spawned"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            tls = None if self.tls is None else self.tls.client_options()
            if wait_serving(self.address, min(1.0, deadline - time.monotonic()), tls):
                return True
        return False

    def wait_standing_by(self, timeout: float) -> bool:
        """Wait until a replacement spawned with ``--takeover-pid`` stands by.

        It has then done its imports, the slow part of a start, and waits for
        the process it replaces to exit. False if it exits or ``timeout`` passes.
        """
        assert self.proc is not None, "server not spawned"
        standby = self.data_dir / STANDBY_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if int(standby.read_text().strip()) == self.proc.pid:
                    return True
            time.sleep(_STANDBY_POLL_S)
        return False

    def log(self) -> str:
        """The server's output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process if it is still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL if needed; return the exit status."""
        if self.proc is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL and reap, for fault injection and last-resort cleanup."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # A stopped (SIGSTOP) process still dies on SIGKILL.
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self if self.proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tls_channel(address: str, tls: TlsOptions) -> grpc.Channel:
    options = [*_POLL_OPTIONS, *tls.channel_options()]
    return grpc.secure_channel(address, tls.credentials(), options=options)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Settings come from flags; stray SLOTCACHE_* variables would change them silently.
    for name in [k for k in env if k.startswith("SLOTCACHE_")]:
        del env[name]
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
