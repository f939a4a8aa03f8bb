"""Turning a refused operation into a gRPC status.

When an error carries a reason (MOVED, for instance), the status also
carries a ``google.rpc.ErrorInfo`` detail, which clients in any language can
decode from the standard ``grpc-status-details-bin`` trailer.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from slotcache.contract import ERROR_DOMAIN, error_info

from ..executor import CommandError


def to_rpc_status(exc: CommandError) -> grpc.Status:
    """A status with an ErrorInfo detail for ``exc``."""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata)
    )
    status = status_pb2.Status(code=exc.code.value[0], message=exc.message, details=[detail])
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def from_rpc_error(exc: grpc.aio.AioRpcError) -> CommandError:
    """A failed call's status, reason and details included, as this node's own refusal."""
    code = exc.code()
    reason, metadata = error_info(exc.trailing_metadata())
    return CommandError(code, exc.details() or code.name, reason, metadata)


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: CommandError) -> None:
    """End the call with ``exc``'s status; never returns normally."""
    if exc.reason:
        await context.abort_with_status(to_rpc_status(exc))
    await context.abort(exc.code, exc.message)
