"""Users for the security tests: tokens, their ACL lines, and calls made as each user."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import grpc

from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2, cache_pb2_grpc
from tests.support import security
from tests.support.nodes import CHANNEL_OPTIONS, RPC_TIMEOUT

ADMIN = "admin-token-5f2c"
READER = "reader-token-8d1e"
APP = "app-token-3b7a"
Metadata = tuple[tuple[str, str], ...]


def rule(token: str) -> str:
    """The ACL rule that lets ``token`` authenticate."""
    return "#" + hashlib.sha256(token.encode()).hexdigest()


#: An operator, a read-only user, and an application narrowed to its keys.
USERS = (
    f"user admin on {rule(ADMIN)} ~* +@all",
    f"user reader on {rule(READER)} %R~* +@read",
    f"user app on {rule(APP)} ~app:* %R~public:* +@read +@write",
)


def write_acl(path: Path, *lines: str) -> Path:
    """Write an ACL file of ``lines`` (USERS by default) and return its path."""
    path.write_text("\n".join(lines or USERS) + "\n")
    return path


def bearer(token: str) -> Metadata:
    """The metadata a client sends for ``token``."""
    return (("authorization", f"Bearer {token}"),)


class Stubs:
    """Plain generated stubs for one node, calling as one user (or as nobody)."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.channel = security.current().channel(address, CHANNEL_OPTIONS, as_session_user=False)
        self.cache = cache_pb2_grpc.CacheStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.metadata: Metadata = bearer(token) if token else ()

    def __enter__(self) -> Stubs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def call(self, stub: Any, rpc: str, request: Any, metadata: Metadata | None = None) -> Any:
        """One unary RPC as this user (``metadata`` replaces the user's)."""
        meta = self.metadata if metadata is None else metadata
        return getattr(stub, rpc)(request, timeout=RPC_TIMEOUT, metadata=meta)

    def pipeline(self, *ops: cache_pb2.Operation) -> list[cache_pb2.OperationResult]:
        """One Pipeline message of ``ops`` on a stream of its own; its results."""
        (reply,) = self.cache.Pipeline(
            iter([cache_pb2.PipelineRequest(ops=ops)]), timeout=RPC_TIMEOUT, metadata=self.metadata
        )
        return list(reply.results)

    def acl_log(self) -> admin_pb2.AclLogReply:
        return self.call(self.admin, "AclLog", admin_pb2.AclLogRequest())


def error_of(call: Any) -> grpc.RpcError:
    """The RpcError ``call()`` raises (the test fails if it succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded")
