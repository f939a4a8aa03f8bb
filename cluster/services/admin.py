"""The Admin servicer: operator RPCs used by clusterctl."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc

from slotcache.v1 import admin_pb2 as pb
from slotcache.v1 import admin_pb2_grpc as pb_grpc


class AdminService(pb_grpc.AdminServicer):
    """Reports what the node is and what it has done.

    The service only reads callbacks it is given, so it never holds state of
    its own and always reports the live figures.
    """

    def __init__(
        self,
        server_info: Callable[[], Mapping[str, str]],
        stats: Callable[[], Mapping[str, int]],
    ) -> None:
        self._server_info = server_info
        self._stats = stats

    async def Info(
        self, request: pb.InfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InfoReply:
        return pb.InfoReply(server=self._server_info(), stats=self._stats())
