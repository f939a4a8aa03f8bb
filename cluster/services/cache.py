"""The Cache servicer: decode, run through the executor, encode.

Each RPC is one line on purpose: validation and semantics live in
:class:`cluster.executor.Executor`, so the unary RPCs and the Pipeline stream
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias, TypeVar

import grpc

from cluster.executor import CommandError, Executor
from cluster.services.status import abort
from cluster.stats import OpCounters
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc as pb_grpc

_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class CacheService(pb_grpc.CacheServicer):
    """Serves ``slotcache.v1.Cache`` from the local keyspace."""

    def __init__(self, executor: Executor, counters: OpCounters) -> None:
        self._executor = executor
        self._counters = counters

    async def Get(self, request: pb.GetRequest, context: Context) -> pb.GetReply:
        return await self._serve("get", self._executor.get, request, context)

    async def Set(self, request: pb.SetRequest, context: Context) -> pb.SetReply:
        return await self._serve("set", self._executor.set, request, context)

    async def Delete(self, request: pb.DeleteRequest, context: Context) -> pb.DeleteReply:
        return await self._serve("delete", self._executor.delete, request, context)

    async def Exists(self, request: pb.ExistsRequest, context: Context) -> pb.ExistsReply:
        return await self._serve("exists", self._executor.exists, request, context)

    async def Expire(self, request: pb.ExpireRequest, context: Context) -> pb.ExpireReply:
        return await self._serve("expire", self._executor.expire, request, context)

    async def Ttl(self, request: pb.TtlRequest, context: Context) -> pb.TtlReply:
        return await self._serve("ttl", self._executor.ttl, request, context)

    async def Incr(self, request: pb.IncrRequest, context: Context) -> pb.IncrReply:
        return await self._serve("incr", self._executor.incr, request, context)

    async def MGet(self, request: pb.MGetRequest, context: Context) -> pb.MGetReply:
        return await self._serve("mget", self._executor.mget, request, context)

    async def MSet(self, request: pb.MSetRequest, context: Context) -> pb.MSetReply:
        return await self._serve("mset", self._executor.mset, request, context)

    async def MDelete(self, request: pb.MDeleteRequest, context: Context) -> pb.MDeleteReply:
        return await self._serve("mdelete", self._executor.mdelete, request, context)

    async def Pipeline(
        self, request_iterator: AsyncIterator[pb.PipelineRequest], context: Context
    ) -> AsyncIterator[pb.PipelineReply]:
        """Answer each batch with one reply batch; a failed operation never ends the stream."""
        run = self._executor.run
        counters = self._counters
        async for batch in request_iterator:
            reply = pb.PipelineReply()
            results = reply.results
            for op in batch.ops:
                result = run(op)
                kind = op.WhichOneof("op") or "unknown"
                if result.HasField("error"):
                    counters.failed(kind, _CODES[result.error.code])
                else:
                    counters.ok(kind)
                results.append(result)
            yield reply

    async def _serve(
        self, op: str, handler: Callable[[_Req], _Rep], request: _Req, context: Context
    ) -> _Rep:
        try:
            reply = handler(request)
        except CommandError as exc:
            self._counters.failed(op, exc.code)
            await abort(context, exc)
            raise  # abort() always raises; this keeps the type checker honest
        self._counters.ok(op)
        return reply


_CODES = {code.value[0]: code for code in grpc.StatusCode}
