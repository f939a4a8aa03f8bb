"""Starts the servers the benchmark measures, each as a child process on loopback.

slotcache nodes (standalone, or several formed into a cluster) come from the
project's launcher; redis-server and the bare gRPC server are started here.
Every start returns a context manager that stops the process on exit, even on
an exception or Ctrl-C, because a leaked server would keep its port and
memory and skew the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import grpc
import redis

from slotcache.ctl.cluster_ops import create_cluster
from slotcache.ctl.launcher import LOOPBACK, ServerProcess, free_port
from slotcache.v1 import cache_pb2, cache_pb2_grpc

SCRIPTS_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 20.0
PORT_ATTEMPTS = 3
_POLL_S = 0.05


class ChildProcess:
    """A server process in its own session, so Ctrl-C reaches the benchmark, not it.

    The benchmark then stops it in order, instead of it dying mid-measurement.
    """

    def __init__(self, name: str, args: Sequence[str], log_path: Path, port: int) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` it listens on."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        """Process id; the process must have been started."""
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def start(self, env: dict[str, str] | None = None) -> None:
        """Spawn the process with its output going to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def wait_ready(self, probe: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
        """Poll ``probe`` until it is true; raise with the process's log if it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                if probe():
                    return
            except Exception:  # not up yet: any failure means "try again"
                pass
            time.sleep(_POLL_S)
        self.stop()
        raise RuntimeError(f"{self.name} on {self.address} did not become ready:\n{self.log()}")

    def log(self) -> str:
        """What the process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def redis_server_path() -> str | None:
    """Where redis-server is, or None when it is not installed."""
    return shutil.which("redis-server")


@contextlib.contextmanager
def _child_on_free_port(
    name: str,
    make_args: Callable[[int], list[str]],
    log_path: Callable[[int], Path],
    ready: Callable[[ChildProcess], bool],
    env: dict[str, str] | None = None,
) -> Iterator[ChildProcess]:
    """Start a child on a free port once it answers ``ready``; stop it on exit.

    A port the kernel called free can be taken before the child binds it, so
    a child that never becomes ready is retried on a new port a few times.
    """
    child: ChildProcess | None = None
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            child = ChildProcess(name, make_args(port), log_path(port), port)
            child.start(env)
            try:
                child.wait_ready(partial(ready, child))
                break
            except RuntimeError:
                if attempt == PORT_ATTEMPTS:
                    raise
        assert child is not None
        yield child
    finally:
        if child is not None:
            child.stop()


def _redis_args(path: str, work_dir: Path, port: int) -> list[str]:
    data_dir = work_dir / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        path,
        "--port", str(port),
        "--bind", LOOPBACK,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
    ]  # fmt: skip


def _redis_answers(child: ChildProcess) -> bool:
    with redis.Redis(host=LOOPBACK, port=child.port, socket_timeout=1) as r:
        return bool(r.ping())


def redis_server(work_dir: Path) -> contextlib.AbstractContextManager[ChildProcess]:
    """A fresh redis-server on a free loopback port, without persistence."""
    path = redis_server_path()
    if path is None:
        raise FileNotFoundError("redis-server is not on PATH")
    return _child_on_free_port(
        "redis-server",
        partial(_redis_args, path, work_dir),
        lambda port: work_dir / f"redis-{port}.log",
        _redis_answers,
    )


def _bare_args(keys: int, port: int) -> list[str]:
    return [sys.executable, "-m", "benchlib.bare_server", "--port", str(port), "--keys", str(keys)]


def _bare_answers(child: ChildProcess) -> bool:
    with grpc.insecure_channel(child.address) as channel:
        cache_pb2_grpc.CacheStub(channel).Get(cache_pb2.GetRequest(key=b"-"), timeout=1)
        return True


def bare_server(work_dir: Path, keys: int) -> contextlib.AbstractContextManager[ChildProcess]:
    """The bare grpc.aio Get server (:mod:`benchlib.bare_server`) on a free loopback port."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS_DIR), env.get("PYTHONPATH")]))
    return _child_on_free_port(
        "bare gRPC server",
        partial(_bare_args, keys),
        lambda port: work_dir / f"bare-{port}.log",
        _bare_answers,
        env,
    )


@contextlib.contextmanager
def slotcache_server(work_dir: Path, extra_args: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """A fresh slotcache-server from the project's launcher, stopped on exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="slotcache-", dir=work_dir))
    server = ServerProcess(data_dir, extra_args=extra_args)
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def slotcache_cluster(
    work_dir: Path, primaries: int, extra_args: Sequence[str] = ()
) -> Iterator[list[ServerProcess]]:
    """Fresh cluster-mode nodes formed into one cluster (slots split evenly); all stopped on exit.

    The nodes boot in parallel (each boot is mostly waiting for a Python
    interpreter), and the list is in slot order: node 0 owns the first range.
    Every node is stopped even if forming the cluster, or a sibling's start,
    fails or is interrupted.
    """
    servers = [
        ServerProcess(
            Path(tempfile.mkdtemp(prefix="slotcache-node-", dir=work_dir)),
            extra_args=extra_args,
            cluster=True,
        )
        for _ in range(primaries)
    ]
    try:
        with ThreadPoolExecutor(max_workers=primaries) as pool:
            list(pool.map(ServerProcess.start, servers))
        create_cluster([s.address for s in servers])
        yield servers
    finally:
        for server in servers:
            server.stop()
