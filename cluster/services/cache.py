"""The Cache servicer: route, run locally through the executor or forward, encode.

Each RPC is one line on purpose: validation and semantics live in
:class:`cluster.executor.Executor`, routing decisions in :mod:`cluster.routing`,
and the network hop in :mod:`cluster.forwarding`. The fast path (every key
local, cluster ok) costs a slot computation and one table lookup per key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

import grpc

from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc as pb_grpc

from ..cluster_runtime import monotonic_ms
from ..executor import CommandError, Executor
from ..forwarding import Forwarder, ForwardError
from ..membership.failover import MANUAL_FAILOVER_TIMEOUT_MS
from ..ownership import Ownership
from ..routing import (
    MAX_HOPS,
    MULTI_OPS,
    READ_OPS,
    SINGLE_KEY_RPCS,
    CallOptions,
    call_options,
    cluster_down,
    handoff_pending,
    hop_limit,
    moved,
    op_keys,
)
from ..services.durability import WRITE_OPS, Durability, wait_until
from ..services.status import abort
from ..slots import key_slot
from ..stats import OpCounters
from ..tracking.hub import TrackingHub
from ..tracking.service import Tracking

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
# A write waits at most this long for a manual failover's pause or a migration's
# handoff to end; then it is routed again (usually to the new owner).
WRITE_HOLD_MAX_S = MANUAL_FAILOVER_TIMEOUT_MS / 1000
_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class CacheService(pb_grpc.CacheServicer):
    """Serves ``slotcache.v1.Cache``: locally owned slots here, the rest by forward or MOVED."""

    def __init__(
        self,
        executor: Executor,
        counters: OpCounters,
        ownership: Ownership,
        forwarder: Forwarder,
        durability: Durability,
        tracking: Tracking | None = None,
        slot_held: Callable[[int], bool] | None = None,
    ) -> None:
        self._executor = executor
        # Whether writes to a slot wait (its migration handoff is under way).
        self._slot_held = slot_held
        self._counters = counters
        self._ownership = ownership
        self._forwarder = forwarder
        self._durability = durability
        # Near-cache invalidation (Subscribe, and reads with slotcache-track).
        self._tracking = tracking or Tracking(
            TrackingHub(executor.keyspace), ownership, executor.limits
        )

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

    async def Topology(self, request: pb.TopologyRequest, context: Context) -> pb.TopologyReply:
        return self._ownership.topology()

    # A coroutine writing with context.write() rather than a generator, so that the
    # stream's cleanup runs in the handler's own task when the client cancels; the
    # generated stub only types the generator form that grpc.aio also accepts.
    async def Subscribe(  # type: ignore[override]
        self, request: pb.SubscribeRequest, context: Context
    ) -> None:
        await self._tracking.subscribe(request, context)

    async def Pipeline(
        self, request_iterator: AsyncIterator[pb.PipelineRequest], context: Context
    ) -> AsyncIterator[pb.PipelineReply]:
        """Answer each batch with one reply batch; a failed operation never ends the stream."""
        options: CallOptions | None = None
        try:
            tracking = self._tracking.for_pipeline(context)
        except CommandError as exc:
            await abort(context, exc)
            return
        if tracking is not None:
            options = tracking.options
        async for batch in request_iterator:
            still_held = await self._wait_if_paused(batch)
            if tracking is not None:
                try:
                    tracking.before_batch(batch)
                except CommandError as exc:
                    await abort(context, exc)
                    return
            if not still_held and self._all_local(batch):
                pending: list[tuple[int, int]] = []
                reply = self._run_local(batch, pending)
                if pending:
                    await self._settle(reply.results, pending, context)
                for op, result in zip(batch.ops, reply.results, strict=True):
                    self._count(op.WhichOneof("op") or "unknown", result)
                yield reply
                continue
            if options is None:
                options = call_options(context.invocation_metadata())
            yield await self._route_batch(batch, options, context, still_held)

    # ---- unary ---------------------------------------------------------------------

    async def _serve(
        self, op: str, handler: Callable[[_Req], _Rep], request: _Req, context: Context
    ) -> _Rep:
        options: CallOptions | None = None
        try:
            if op in READ_OPS:
                tracked = self._tracking.tracked_read(op, handler, context)
                if tracked is not None:
                    handler, options = tracked
            reply: _Rep = await self._execute(op, handler, request, context, options)
        except CommandError as exc:
            self._counters.failed(op, exc.code)
            await abort(context, exc)
            raise  # abort() always raises; this keeps the type checker honest
        self._counters.ok(op)
        return reply

    async def _execute(
        self,
        op: str,
        handler: Callable[[Any], Any],
        request: Any,
        context: Context,
        options: CallOptions | None,
    ) -> Any:
        """Run one request wherever its keys live; raise CommandError on refusal."""
        ownership = self._ownership
        needed = self._durability.required(op, request)
        if not ownership.cluster_enabled:
            if not needed:
                return handler(request)
            return await self._local(handler, request, needed, context)
        keys = op_keys(op, request)
        slots = [key_slot(k) for k in keys]
        if op in WRITE_OPS and self._held(slots):
            await wait_until(lambda: not self._held(slots), WRITE_HOLD_MAX_S)
            self._refuse_if_handing_off(slots)
        local = all(ownership.is_local(s) for s in slots)
        if local and (ownership.ok or (op in READ_OPS and ownership.allow_reads_when_down)):
            # The handler validates the request itself.
            return (
                handler(request)
                if not needed
                else await self._local(handler, request, needed, context)
            )
        self._check_request(op, request, keys)
        if options is None:
            options = call_options(context.invocation_metadata())
        if op in READ_OPS and options.replica_read and self._replica_serves(slots):
            context.set_trailing_metadata(self._durability.lag_metadata())
            return handler(request)
        if not ownership.ok:
            raise cluster_down("the cluster is down")
        return await self._remote(op, handler, request, slots, options, context)

    async def _local(
        self, handler: Callable[[Any], Any], request: Any, needed: int, context: Context
    ) -> Any:
        """Apply a write here and hold the answer until ``needed`` replicas have it."""
        durability = self._durability
        durability.check_available(needed)
        reply = handler(request)
        await durability.wait(needed, context.time_remaining())
        return reply

    def _held(self, slots: Iterable[int]) -> bool:
        """Writes to ``slots`` must wait for now.

        A manual failover pauses this node's writes while its replica catches
        up, and a migration's handoff holds its slots' writes. Once released,
        a write is routed again (usually to the new owner).
        """
        if self._ownership.membership.writes_paused(monotonic_ms()):
            return True
        held = self._slot_held
        return held is not None and any(held(s) for s in slots)

    def _refuse_if_handing_off(self, slots: Iterable[int]) -> None:
        """A write that waited its longest for a handoff still under way fails (retryably)."""
        held = self._slot_held
        if held is not None:
            for slot in slots:
                if held(slot):
                    raise handoff_pending(slot)

    def _replica_serves(self, slots: list[int]) -> bool:
        """This node replicates the owner of every slot and holds a complete copy."""
        membership = self._ownership.membership
        primary = membership.myself.primary
        return (
            bool(primary)
            and all(membership.slots.owner(s) == primary for s in slots)
            and self._durability.serves_replica_reads()
        )

    def _check_request(self, op: str, request: Any, keys: list[bytes]) -> None:
        """Validate before routing, so bad input fails the same way on every node.

        The checks and messages are the executor's own, so they match what a
        standalone node, or the owner, would answer.
        """
        if op == "mset":
            self._executor.check_mset(request)
        elif op in MULTI_OPS:
            self._executor.limits.check_keys(keys)
        else:
            self._executor.limits.check_key(keys[0])

    async def _remote(
        self,
        op: str,
        handler: Callable[[Any], Any],
        request: Any,
        slots: list[int],
        options: CallOptions,
        context: Context,
    ) -> Any:
        ownership = self._ownership
        owners = [ownership.owner(s) for s in slots]
        for slot, owner in zip(slots, owners, strict=True):
            if owner is None:
                raise cluster_down(f"slot {slot} is not served by any node")
        if options.redirect:
            slot = next(s for s in slots if not ownership.is_local(s))
            owner = ownership.owner(slot)
            assert owner is not None
            raise moved(slot, owner)
        if options.hops >= MAX_HOPS:
            raise hop_limit(slots[0])
        timeout = context.time_remaining()
        multi = MULTI_OPS.get(op)
        if multi is None:
            owner = owners[0]
            assert owner is not None
            rpc = SINGLE_KEY_RPCS[op]
            return await self._forward(owner.address, rpc, request, options, timeout)
        # Split by owner, run the parts concurrently, merge in request order.
        groups: dict[str | None, list[int]] = {}
        for i, (slot, owner) in enumerate(zip(slots, owners, strict=True)):
            assert owner is not None
            address = None if ownership.is_local(slot) else owner.address
            groups.setdefault(address, []).append(i)
        reply = multi.new_reply(len(slots))

        async def part(address: str | None, indices: list[int]) -> None:
            sub = multi.subset(request, indices)
            if address is None:
                needed = self._durability.required(op, sub)
                result = (
                    await self._local(handler, sub, needed, context) if needed else handler(sub)
                )
            else:
                result = await self._forward(address, multi.rpc, sub, options, timeout)
            multi.merge(reply, indices, result)

        await asyncio.gather(*(part(a, idx) for a, idx in groups.items()))
        return reply

    async def _forward(
        self, address: str, rpc: str, request: Any, options: CallOptions, timeout: float | None
    ) -> Any:
        try:
            return await self._forwarder.unary(address, rpc, request, options.hops + 1, timeout)
        except ForwardError as exc:
            raise exc.to_command_error() from None

    # ---- pipeline ------------------------------------------------------------------

    def _all_local(self, batch: pb.PipelineRequest) -> bool:
        ownership = self._ownership
        if not ownership.cluster_enabled:
            return True
        if not ownership.ok:
            return False
        for op in batch.ops:
            kind = op.WhichOneof("op")
            if kind is None:
                continue
            for key in op_keys(kind, getattr(op, kind)):
                if not ownership.is_local(key_slot(key)):
                    return False
        return True

    def _run_local(
        self, batch: pb.PipelineRequest, pending: list[tuple[int, int]]
    ) -> pb.PipelineReply:
        reply = pb.PipelineReply()
        results = reply.results
        for i, op in enumerate(batch.ops):
            results.append(self._run_op(i, op, pending))
        return reply

    def _run_op(
        self, index: int, op: pb.Operation, pending: list[tuple[int, int]]
    ) -> pb.OperationResult:
        """Run one operation here; a write that needs replicas is noted in ``pending``."""
        kind = op.WhichOneof("op")
        needed = self._durability.required(kind, getattr(op, kind)) if kind else 0
        if needed:
            try:
                self._durability.check_available(needed)
            except CommandError as exc:
                return pb.OperationResult(id=op.id, error=exc.to_proto())
        result = self._executor.run(op)
        if needed and not result.HasField("error"):
            pending.append((index, needed))
        return result

    async def _settle(
        self,
        results: Any,
        pending: list[tuple[int, int]],
        context: Context,
    ) -> None:
        """Wait for the replicas a batch's writes need; failed waits become those ops' errors."""
        needed = max(n for _, n in pending)
        try:
            await self._durability.wait(needed, context.time_remaining())
            return
        except CommandError:
            pass
        # Fewer acknowledged the batch's last write than its strictest op needed:
        # report each write against its own requirement.
        for index, n in pending:
            try:
                await self._durability.wait(n, 0.001)
            except CommandError as exc:
                op_id = results[index].id
                results[index].CopyFrom(pb.OperationResult(id=op_id, error=exc.to_proto()))

    async def _wait_if_paused(self, batch: pb.PipelineRequest) -> bool:
        """Wait while the batch's writes are held; True if a handoff still holds some after."""
        if not self._ownership.cluster_enabled:
            return False
        slots = [
            key_slot(key)
            for op in batch.ops
            if (kind := op.WhichOneof("op")) in WRITE_OPS
            for key in op_keys(kind, getattr(op, kind))
        ]
        if slots and self._held(slots):
            await wait_until(lambda: not self._held(slots), WRITE_HOLD_MAX_S)
            held = self._slot_held
            return held is not None and any(held(s) for s in slots)
        return False

    async def _route_batch(
        self,
        batch: pb.PipelineRequest,
        options: CallOptions,
        context: Context,
        refuse_held: bool = False,
    ) -> pb.PipelineReply:
        """Run local operations here, forward the rest grouped by owner, keep the order.

        Operations on different owners run concurrently, which is safe while
        they touch different keys. A multi-key operation may span owners and
        run on its own, so when it shares a key with another operation of the
        batch (and one of them writes), the operations before it are finished
        first: a later operation always sees an earlier one's effect, as on a
        single node.
        """
        ops = list(batch.ops)
        results: list[pb.OperationResult | None] = [None] * len(ops)
        pending: list[tuple[int, int]] = []
        forward: dict[str, list[int]] = {}
        spread: list[int] = []
        # Keys touched in the current segment (True when written), by any
        # operation and by multi-key operations only.
        touched: dict[bytes, bool] = {}
        touched_multi: dict[bytes, bool] = {}
        for i, op in enumerate(ops):
            kind = op.WhichOneof("op")
            if kind is None:
                results[i] = self._executor.run(op)
                continue
            request = getattr(op, kind)
            keys = op_keys(kind, request)
            writes = kind not in READ_OPS
            multi = kind in MULTI_OPS
            if _conflicts(keys, writes, touched_multi) or (
                multi and _conflicts(keys, writes, touched)
            ):
                await self._run_segment(ops, results, forward, spread, options, context)
                forward, spread = {}, []
                touched, touched_multi = {}, {}
            try:
                if refuse_held and kind in WRITE_OPS:
                    self._refuse_if_handing_off(key_slot(k) for k in keys)
                self._check_request(kind, request, keys)
                target = self._pipeline_target(kind, request, options)
            except CommandError as exc:
                results[i] = pb.OperationResult(id=op.id, error=exc.to_proto())
                continue
            for key in keys:
                touched[key] = writes or touched.get(key, False)
                if multi:
                    touched_multi[key] = writes or touched_multi.get(key, False)
            if target is None:
                results[i] = self._run_op(i, op, pending)
            elif target == "*":
                spread.append(i)
            else:
                forward.setdefault(target, []).append(i)
        await self._run_segment(ops, results, forward, spread, options, context)
        if pending:
            await self._settle(results, pending, context)
        out = pb.PipelineReply()
        for op, result in zip(ops, results, strict=True):
            assert result is not None
            self._count(op.WhichOneof("op") or "unknown", result)
            out.results.append(result)
        return out

    async def _run_segment(
        self,
        ops: list[pb.Operation],
        results: list[pb.OperationResult | None],
        forward: dict[str, list[int]],
        spread: list[int],
        options: CallOptions,
        context: Context,
    ) -> None:
        """Forward each owner's operations as one batch and fan out the rest, concurrently."""
        if not forward and not spread:
            return

        async def send(address: str, indices: list[int]) -> None:
            sub = pb.PipelineRequest(ops=[ops[i] for i in indices])
            try:
                reply = await self._forwarder.pipeline(
                    address, sub, options.hops + 1, context.time_remaining()
                )
                for i, result in zip(indices, reply.results, strict=True):
                    results[i] = result
            except ForwardError as exc:
                error = exc.to_command_error().to_proto()
                for i in indices:
                    results[i] = pb.OperationResult(id=ops[i].id, error=error)

        async def fan_out(i: int) -> None:
            op = ops[i]
            kind = op.WhichOneof("op")
            assert kind is not None
            result = pb.OperationResult(id=op.id)
            try:
                handler = getattr(self._executor, kind)
                reply = await self._execute(kind, handler, getattr(op, kind), context, options)
                getattr(result, kind).CopyFrom(reply)
            except CommandError as exc:
                result.error.CopyFrom(exc.to_proto())
            results[i] = result

        await asyncio.gather(
            *(send(a, idx) for a, idx in forward.items()), *(fan_out(i) for i in spread)
        )

    def _pipeline_target(self, kind: str, request: Any, options: CallOptions) -> str | None:
        """None to run here, an address to forward to, or "*" when the keys span owners."""
        ownership = self._ownership
        keys = op_keys(kind, request)
        slots = [key_slot(k) for k in keys]
        local = all(ownership.is_local(s) for s in slots)
        if local and (ownership.ok or (kind in READ_OPS and ownership.allow_reads_when_down)):
            return None
        if kind in READ_OPS and options.replica_read and self._replica_serves(slots):
            return None
        if not ownership.ok:
            raise cluster_down("the cluster is down")
        addresses = set()
        for slot in slots:
            owner = ownership.owner(slot)
            if owner is None:
                raise cluster_down(f"slot {slot} is not served by any node")
            if options.redirect and not ownership.is_local(slot):
                raise moved(slot, owner)
            addresses.add(None if ownership.is_local(slot) else owner.address)
        if options.hops >= MAX_HOPS:
            raise hop_limit(slots[0])
        if len(addresses) == 1:
            return addresses.pop()
        return "*"

    def _count(self, kind: str, result: pb.OperationResult) -> None:
        if result.HasField("error"):
            self._counters.failed(kind, _CODES[result.error.code])
        else:
            self._counters.ok(kind)


def _conflicts(keys: list[bytes], writes: bool, touched: dict[bytes, bool]) -> bool:
    """Running ``keys`` concurrently with ``touched`` could reorder a write and another access."""
    if not touched:
        return False
    for key in keys:
        written = touched.get(key)
        if written is not None and (writes or written):
            return True
    return False
