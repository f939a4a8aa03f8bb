"""The Replication servicer on the bus port: a thin adapter over PrimaryReplication."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ..replication.primary import PrimaryReplication
from ..security.member_rpc import admit_member, answer_as_member, method_path
from ..security.node_auth import NodeAuth
from ..wire import replication_pb2 as pb
from ..wire import replication_pb2_grpc as pb_grpc

REPLICATE = method_path(pb.DESCRIPTOR.services_by_name["Replication"].full_name, "Replicate")


class ReplicationService(pb_grpc.ReplicationServicer):
    """Serves replicas, when they are members, while this node is a primary."""

    def __init__(
        self, primary: Callable[[], PrimaryReplication | None], auth: NodeAuth | None = None
    ) -> None:
        self._primary = primary
        self._auth = auth or NodeAuth()

    async def Replicate(
        self,
        request_iterator: AsyncIterator[pb.ReplicaMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.PrimaryMessage]:
        """Sync one replica and keep streaming to it."""
        await admit_member(self._auth, context, REPLICATE)
        await answer_as_member(self._auth, context, REPLICATE)
        primary = self._primary()
        if primary is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this node is not a primary")
            return
        async for message in primary.serve(request_iterator):
            yield message
