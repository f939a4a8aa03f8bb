"""Node authentication on the gRPC calls between nodes: admit, answer, check the answer.

A node-to-node call is proven both ways. The callee admits only a
member's call (:func:`admit_member`), and proves its answer in the
response's metadata (:func:`answer_as_member`), signed over the caller's
nonce. The caller then checks that answer (:func:`check_answer`) before
it acts on it, so a stranger answering at a member's address (one that
took over a departed node's IP, or an operator's mistyped MEET) is not
believed either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from .node_auth import NodeAuth

NOT_A_MEMBER = "not a cluster member"


def method_path(service: str, rpc: str) -> str:
    """The full gRPC method name, as calls are signed over (``/slotcache.v1.Bus/Exchange``)."""
    return f"/{service}/{rpc}"


class NotAMember(ConnectionError):
    """The node called did not prove it is a member of this cluster."""


async def admit_member(
    auth: NodeAuth,
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    body: bytes = b"",
) -> None:
    """End the call with UNAUTHENTICATED unless a member made it (counted and logged)."""
    if not auth.is_member_call(context, method, body):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, NOT_A_MEMBER)


async def answer_as_member(
    auth: NodeAuth,
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    body: bytes = b"",
    unary: bool = False,
) -> None:
    """Prove that this answer (``body``) is a member's.

    A unary call's proof rides in the trailers, sent with the answer in the
    same write; a stream's goes in the response headers, sent at once.
    """
    metadata = auth.reply_metadata(context, method, body)
    if not metadata:
        return
    if unary:
        context.set_trailing_metadata(metadata)
    else:
        await context.send_initial_metadata(metadata)


async def check_answer(
    auth: NodeAuth,
    call: Any,
    sent: Sequence[tuple[str, str]],
    method: str,
    peer: str,
    body: bytes = b"",
    unary: bool = False,
) -> None:
    """Raise NotAMember unless the answer to ``call`` (made with ``sent``) is a member's.

    ``unary`` as for :func:`answer_as_member`: where the proof travels.
    """
    if not auth.signs:
        return
    received = await (call.trailing_metadata() if unary else call.initial_metadata())
    if not received and call.done() and await call.code() != grpc.StatusCode.OK:
        # The call failed before any answer (the callee may have refused us):
        # nothing is acted on, and reading the call raises the real error.
        return
    if not auth.is_member_reply(sent, received or (), method, body, peer):
        raise NotAMember(
            f"{peer} did not prove it is a member of this cluster (is its cluster secret the same?)"
        )
