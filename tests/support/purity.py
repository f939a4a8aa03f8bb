"""Keeps the pure tiers pure: a test there that opens a network endpoint or starts a process fails.

The unit tier promises to run alone, fast, anywhere, with nothing started
and no port touched (heavy, its slow sibling, makes the same promise). A
test that starts a server, forks, opens a socket or a gRPC channel belongs
in tests/integration; without this guard it could slip into tests/unit and
still pass on a machine where the port happened to be free, or where a
development cluster happened to be listening.

What stays allowed, narrowly:

- Unix-domain sockets may be *created*: asyncio's event loop makes a
  ``socket.socketpair()`` for its self-pipe, so every async pure test
  needs one. Nothing may ``connect`` or ``bind`` a socket of any family.
- gRPC stubs may be built and ``grpc_testing`` may run servicers in
  process; only real servers and channels are refused. The SDK opens its
  channels on first use, so building a client without calling it passes.
"""

from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
import grpc.aio
import pytest

# socket.socket's family when none is given: AF_INET.
_INET_FAMILIES = (-1, socket.AF_INET, socket.AF_INET6)


class Refusals:
    """What one test tried; kept so an attempt made on a thread, or caught, still fails it."""

    def __init__(self, tier: str) -> None:
        self.tier = tier
        self.attempts: list[str] = []
        self.reported = False

    def refuse(self, what: str) -> NoReturn:
        self.attempts.append(what)
        pytest.fail(self.message(), pytrace=True)

    def unreported(self) -> bool:
        return bool(self.attempts) and not self.reported

    def message(self) -> str:
        tried = "; ".join(self.attempts)
        return (
            f"tests/{self.tier} is pure: no process, socket, gRPC server or channel "
            f"(tried: {tried}). A test that needs one belongs in tests/integration/<area>."
        )


def _refusing(refusals: Refusals, what: str) -> Callable[..., NoReturn]:
    def refused(*args: Any, **kwargs: Any) -> NoReturn:
        refusals.refuse(what)

    return refused


@contextlib.contextmanager
def forbid_io(refusals: Refusals) -> Iterator[None]:
    """Within the block, processes, network sockets and real gRPC endpoints fail the test."""
    real_socket_init = socket.socket.__init__

    def socket_init(
        self: socket.socket,
        family: int = -1,
        type: int = -1,
        proto: int = -1,
        fileno: int | None = None,
    ) -> None:
        if fileno is None and family in _INET_FAMILIES:
            refusals.refuse(f"socket.socket(family={family!r})")
        real_socket_init(self, family, type, proto, fileno)

    refused: list[tuple[object, str, str]] = [
        (socket.socket, "connect", "socket.connect"),
        (socket.socket, "connect_ex", "socket.connect_ex"),
        (socket.socket, "bind", "socket.bind"),
        (subprocess.Popen, "__init__", "subprocess.Popen"),
        (_posixsubprocess, "fork_exec", "a child process (multiprocessing?)"),
        (os, "system", "os.system"),
        (os, "fork", "os.fork"),
        (os, "forkpty", "os.forkpty"),
        (os, "posix_spawn", "os.posix_spawn"),
        (os, "posix_spawnp", "os.posix_spawnp"),
        (grpc, "server", "grpc.server"),
        (grpc, "insecure_channel", "grpc.insecure_channel"),
        (grpc, "secure_channel", "grpc.secure_channel"),
        (grpc.aio, "server", "grpc.aio.server"),
        (grpc.aio, "insecure_channel", "grpc.aio.insecure_channel"),
        (grpc.aio, "secure_channel", "grpc.aio.secure_channel"),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "__init__", socket_init)
        for owner, name, what in refused:
            patch.setattr(owner, name, _refusing(refusals, what))
        yield
