"""The sans-I/O client core shared by :class:`Client` and :class:`AsyncClient`.

A command runs as a *plan*: a generator that yields the gRPC calls it needs
(a list, so independent calls can run concurrently) and receives their
outcomes, then returns the result. The clients only perform the calls:
blocking in one, awaited in the other. Everything else (deadlines, error
translation, and later routing, redirects and retries) lives here once.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from slotcache._commands import Command
from slotcache.errors import SlotcacheError
from slotcache.v1 import cache_pb2

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
SERVICE = cache_pb2.DESCRIPTOR.services_by_name["Cache"]

# gRPC's 4 MiB default would refuse values the server accepts (16 MiB by
# default); the server enforces the real limits with clearer errors.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


@dataclass(frozen=True, slots=True)
class Call:
    """One unary call for a client to perform."""

    rpc: str
    request: Any
    timeout: float | None


Outcome = Any  # a reply message, or the SlotcacheError the call failed with
Plan = Generator[list[Call], list[Outcome], T]


def unary_methods() -> list[tuple[str, str, Any, Any]]:
    """``(name, path, request class, reply class)`` for every unary Cache RPC."""
    out = []
    for method in SERVICE.methods:
        if method.client_streaming or method.server_streaming:
            continue
        request_cls = getattr(cache_pb2, method.input_type.name)
        reply_cls = getattr(cache_pb2, method.output_type.name)
        out.append((method.name, f"/{SERVICE.full_name}/{method.name}", request_cls, reply_cls))
    return out


def check_timeout(timeout: float | None) -> float | None:
    """Refuse zero or negative timeouts, which gRPC would treat as "already expired"."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds (got {timeout})")
    return timeout


class ClientCore:
    """Decides what to send and how to read what comes back."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self.timeout = check_timeout(timeout)

    def plan(self, command: Command[T], timeout: float | None = None) -> Plan[T]:
        """Run ``command``: one call, its outcome parsed or raised."""
        deadline = self.timeout if timeout is None else check_timeout(timeout)
        (outcome,) = yield [Call(command.rpc, command.request, deadline)]
        if isinstance(outcome, SlotcacheError):
            raise outcome
        return command.parse(outcome)
