"""The Cache servicer: an adapter between gRPC and the routing decision.

Each RPC asks :func:`~slotcache_server.routing.decide` where its keys go and
carries out the answer: the executor runs it here, the forwarder relays it
to the owner, or the error goes back. A Pipeline message is planned by
:func:`~slotcache_server.routing.plan_batch` from the same decisions, so a
unary call and the same operation inside a Pipeline always answer alike.
The fast path (every key local, cluster ok) costs a slot computation and a
table lookup per key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeAlias, TypeVar

import grpc

from slotcache.contract import OPS, Op, key_slots
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc as pb_grpc

from ..executor import CommandError, Executor, unknown_operation
from ..forwarding import Forwarder, ForwardError
from ..holds import WriteHolds
from ..membership.failover import MANUAL_FAILOVER_TIMEOUT_MS
from ..observability.calls import CallRecorder
from ..observability.tracing import Tracer, sampled
from ..ownership import Ownership
from ..routing import (
    CallOptions,
    Decision,
    Forward,
    Local,
    Planned,
    Refused,
    Spread,
    call_options,
    decide,
    plan_batch,
    serves_everything,
)
from ..security.access import Access, Caller, cache_method, not_permitted
from ..security.limits import InputLimits
from ..services.durability import Durability
from ..services.status import abort
from ..tracking.service import Tracking

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = Callable[[Any], Any]
# A write waits at most this long for a manual failover's pause or a migration's
# handoff to end; then it is routed again (usually to the new owner).
WRITE_HOLD_MAX_S = MANUAL_FAILOVER_TIMEOUT_MS / 1000
_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")
_GET, _SET, _DELETE, _EXISTS, _EXPIRE = (
    OPS["get"],
    OPS["set"],
    OPS["delete"],
    OPS["exists"],
    OPS["expire"],
)


class CallContext(Protocol):
    """What carrying out a decision needs of the call: its deadline, and a place for trailers.

    A gRPC ServicerContext is one; the Redis-protocol listener passes its own,
    so both protocols carry decisions out through :meth:`CacheService.carry_out`.
    """

    def time_remaining(self) -> float | None: ...

    def set_trailing_metadata(self, trailing_metadata: Any) -> None: ...


_TTL, _INCR, _MGET, _MSET, _MDELETE = (
    OPS["ttl"],
    OPS["incr"],
    OPS["mget"],
    OPS["mset"],
    OPS["mdelete"],
)


class CacheService(pb_grpc.CacheServicer):
    """Serves ``slotcache.v1.Cache``: locally owned slots here, the rest by forward or MOVED."""

    def __init__(
        self,
        executor: Executor,
        ownership: Ownership,
        forwarder: Forwarder,
        durability: Durability,
        holds: WriteHolds,
        tracking: Tracking,
        recorder: CallRecorder,
        tracer: Tracer | None = None,
        access: Access | None = None,
        *,
        limits: InputLimits,
    ) -> None:
        self._executor = executor
        self._handlers = executor.handlers
        self._ownership = ownership
        self._forwarder = forwarder
        self._durability = durability
        self._holds = holds
        # Near-cache invalidation (Subscribe, and reads with slotcache-track).
        self._tracking = tracking
        self._recorder = recorder
        self._tracer = tracer
        # Users, permissions and protected mode; inactive, it costs one attribute read.
        self._access = access or Access(None, protected_mode=False)
        # Keys per multi-key call, operations per Pipeline message.
        self._limits = limits

    async def Get(self, request: pb.GetRequest, context: Context) -> pb.GetReply:
        return await self._unary(_GET, self._executor.get, request, context)

    async def Set(self, request: pb.SetRequest, context: Context) -> pb.SetReply:
        return await self._unary(_SET, self._executor.set, request, context)

    async def Delete(self, request: pb.DeleteRequest, context: Context) -> pb.DeleteReply:
        return await self._unary(_DELETE, self._executor.delete, request, context)

    async def Exists(self, request: pb.ExistsRequest, context: Context) -> pb.ExistsReply:
        return await self._unary(_EXISTS, self._executor.exists, request, context)

    async def Expire(self, request: pb.ExpireRequest, context: Context) -> pb.ExpireReply:
        return await self._unary(_EXPIRE, self._executor.expire, request, context)

    async def Ttl(self, request: pb.TtlRequest, context: Context) -> pb.TtlReply:
        return await self._unary(_TTL, self._executor.ttl, request, context)

    async def Incr(self, request: pb.IncrRequest, context: Context) -> pb.IncrReply:
        return await self._unary(_INCR, self._executor.incr, request, context)

    async def MGet(self, request: pb.MGetRequest, context: Context) -> pb.MGetReply:
        return await self._unary(_MGET, self._executor.mget, request, context)

    async def MSet(self, request: pb.MSetRequest, context: Context) -> pb.MSetReply:
        return await self._unary(_MSET, self._executor.mset, request, context)

    async def MDelete(self, request: pb.MDeleteRequest, context: Context) -> pb.MDeleteReply:
        return await self._unary(_MDELETE, self._executor.mdelete, request, context)

    async def Topology(self, request: pb.TopologyRequest, context: Context) -> pb.TopologyReply:
        if self._access.active:  # any authenticated user may see the layout
            await self._authenticate(context, "Topology")
        return self._ownership.topology()

    # A coroutine writing with context.write() rather than a generator, so that the
    # stream's cleanup runs in the handler's own task when the client cancels; the
    # generated stub only types the generator form that grpc.aio also accepts.
    async def Subscribe(  # type: ignore[override]
        self, request: pb.SubscribeRequest, context: Context
    ) -> None:
        if self._access.active:
            try:
                self._access.subscribe(context, request)
            except CommandError as exc:
                await abort(context, exc)
                return
        await self._tracking.subscribe(request, context)

    async def Pipeline(
        self, request_iterator: AsyncIterator[pb.PipelineRequest], context: Context
    ) -> AsyncIterator[pb.PipelineReply]:
        """Answer each batch with one reply batch; a failed operation never ends the stream."""
        # The stream is authenticated once; its messages are then checked per operation.
        caller = await self._authenticate(context, "Pipeline") if self._access.active else None
        try:
            tracking = self._tracking.for_pipeline(context)
        except CommandError as exc:
            await abort(context, exc)
            return
        # Metadata is fixed for the stream's life: read the options once.
        options = (
            tracking.options
            if tracking is not None
            else call_options(context.invocation_metadata())
        )
        if caller is not None:
            options = replace(options, caller=caller)
        recorder = self._recorder
        check_message = self._limits.check_message
        recorder.streams_open += 1
        try:
            async for batch in request_iterator:
                try:
                    # A message over the limit ends the stream (see docs/security.md).
                    check_message(batch.ops)
                    if tracking is not None:
                        tracking.before_batch(batch)
                    if caller is not None:
                        options = self._reauthenticated(options)
                except CommandError as exc:
                    await abort(context, exc)
                    return
                yield await self._batch(batch, options, context)
        finally:
            recorder.streams_open -= 1

    # ---- unary ---------------------------------------------------------------------

    async def _unary(
        self, op: Op, run: Callable[[_Req], _Rep], request: _Req, context: Context
    ) -> _Rep:
        """Route one call, carry the decision out, count it, and turn refusals into statuses."""
        recorder = self._recorder
        started = recorder.started()
        handler: Handler = run
        # Left None on a node that owns every slot: nothing hashes keys there.
        keys: list[bytes] | None = None
        slots: list[int] | None = None
        try:
            # Users: the call is authenticated and its keys checked before anything runs.
            caller = self._access.unary(context, op, request) if self._access.active else None
            self._limits.check_call(op, request)
            options: CallOptions | None = None
            if not op.writes:
                tracked = self._tracking.tracked_read(op, handler, context)
                if tracked is not None:
                    handler, options = tracked
            holds = self._holds
            if serves_everything(self._ownership, op.writes and holds.active):
                reply: _Rep = await self._local(op, handler, request, context)
            else:
                keys = op.keys(request)
                slots = key_slots(keys)
                if op.writes and holds.held(slots):
                    await holds.wait(slots, WRITE_HOLD_MAX_S)
                if options is None:
                    options = call_options(context.invocation_metadata())
                if caller is not None:
                    options = replace(options, caller=caller)
                decision = decide(op, slots, options, self._ownership)
                if options.trace and self._tracer is not None and sampled(options.trace):
                    reply = await self._traced(
                        op, decision, handler, request, keys, options, context
                    )
                else:
                    reply = await self.carry_out(
                        op, decision, handler, request, keys, options, context
                    )
        except CommandError as exc:
            recorder.unary(op, started, keys, slots, request, None, exc, context)
            await abort(context, exc)
            raise  # abort() always raises; this keeps the type checker honest
        recorder.unary(op, started, keys, slots, request, reply, None, context)
        return reply

    async def _traced(
        self,
        op: Op,
        decision: Decision,
        handler: Handler,
        request: Any,
        keys: list[bytes],
        options: CallOptions,
        context: Context,
    ) -> Any:
        """Carry out a sampled call inside a server span; forwards carry the span's context."""
        assert self._tracer is not None
        with self._tracer.span(op.rpc, options.trace) as trace:
            options = replace(options, trace=trace)
            return await self.carry_out(op, decision, handler, request, keys, options, context)

    async def carry_out(
        self,
        op: Op,
        decision: Decision,
        handler: Handler,
        request: Any,
        keys: list[bytes],
        options: CallOptions,
        context: CallContext,
    ) -> Any:
        """Do what the decision says with one request; raise CommandError on refusal.

        Anything that leaves this node is validated here first, with the
        owner's checks, so bad input fails alike on every node.
        """
        if type(decision) is Local:
            if decision.replica:
                context.set_trailing_metadata(self._durability.lag_metadata())
                return handler(request)
            return await self._local(op, handler, request, context)
        self._executor.check(op, request, keys)
        if type(decision) is Forward:
            return await self._forward(decision.address, op.rpc, request, options, context)
        if type(decision) is Spread:
            return await self._spread(op, decision, handler, request, options, context)
        assert type(decision) is Refused
        raise decision.error

    async def _local(self, op: Op, handler: Handler, request: Any, context: CallContext) -> Any:
        """Run here; a write that asks for replicas is answered once enough hold it."""
        needed = self._durability.required(op, request)
        if not needed:
            return handler(request)
        durability = self._durability
        await durability.await_replicas(needed, context.time_remaining())
        durability.check_available(needed)
        reply = handler(request)
        await durability.wait(needed, context.time_remaining())
        return reply

    async def _spread(
        self,
        op: Op,
        decision: Spread,
        handler: Handler,
        request: Any,
        options: CallOptions,
        context: CallContext,
    ) -> Any:
        """Split a multi-key request by owner, run the parts concurrently, merge in order."""
        multi = op.multi
        assert multi is not None  # only multi-key operations spread
        self._recorder.fanned_out += 1
        reply = multi.new_reply(sum(len(idx) for idx in decision.groups.values()))

        async def part(address: str | None, indices: list[int]) -> None:
            sub = multi.subset(request, indices)
            if address is None:
                result = await self._local(op, handler, sub, context)
            else:
                result = await self._forward(address, op.rpc, sub, options, context)
            multi.merge(reply, indices, result)

        await asyncio.gather(*(part(a, idx) for a, idx in decision.groups.items()))
        return reply

    async def _forward(
        self, address: str, rpc: str, request: Any, options: CallOptions, context: CallContext
    ) -> Any:
        try:
            return await self._forwarder.unary(
                address,
                rpc,
                request,
                options.hops + 1,
                context.time_remaining(),
                options.trace,
                self._access.forwarding(options.caller, rpc),
            )
        except ForwardError as exc:
            raise exc.to_command_error() from None

    # ---- users and permissions -----------------------------------------------------

    async def _authenticate(self, context: Context, rpc: str) -> Caller | None:
        """Authenticate a stream (or Topology) once; a refusal ends the call."""
        try:
            return self._access.caller(context, cache_method(rpc))
        except CommandError as exc:
            await abort(context, exc)
            raise  # abort() always raises

    def _reauthenticated(self, options: CallOptions) -> CallOptions:
        """The stream's options with its caller as the users now in force see it."""
        caller = options.caller
        assert caller is not None
        fresh = self._access.current(caller)
        return options if fresh is caller else replace(options, caller=fresh)

    @staticmethod
    def _restricted(options: CallOptions) -> Caller | None:
        """The caller whose operations need a look: None without users or for a user of all keys."""
        caller = options.caller
        return None if caller is None or caller.user.unrestricted else caller

    # ---- pipeline ------------------------------------------------------------------

    async def _batch(
        self, batch: pb.PipelineRequest, options: CallOptions, context: Context
    ) -> pb.PipelineReply:
        """Plan a message's operations, run them in segments, and answer them in order."""
        started = self._recorder.started()
        ops = batch.ops
        specs: list[Op | None] = [OPS.get(op.WhichOneof("op") or "") for op in ops]
        # Refused operations run as unknown ones (nothing) and get their own error below.
        refused = self._limits.refused_ops(ops, specs)
        if refused:
            for i in refused:
                specs[i] = None
        pending: list[tuple[int, int]] = []
        all_slots: list[list[int]] | None = None
        if serves_everything(self._ownership, self._holds.active):
            # A node that owns every slot: no key needs hashing.
            await self._await_replicas(ops, specs, context)
            run_op, caller = self._run_op, self._restricted(options)
            results: list[pb.OperationResult | None] = [
                run_op(i, op, specs[i], pending, caller) for i, op in enumerate(ops)
            ]
        else:
            results, all_slots = await self._route_batch(ops, specs, pending, options, context)
        if pending:
            await self._settle(results, pending, context)
        if refused:
            for i, result in refused.items():
                results[i] = result
        reply = pb.PipelineReply()
        reply.results.extend(results)  # type: ignore[arg-type]  # every slot is filled
        self._recorder.batch(
            specs, ops, results, all_slots, started, batch.ByteSize(), reply.ByteSize(), context
        )
        return reply

    async def _await_replicas(self, ops: Any, specs: list[Op | None], context: Context) -> None:
        """Before any of a message runs: wait for replicas coming back that its writes need.

        The message waits once, for its strictest write, so that a replica
        reconnecting does not fail some of its writes and not others.
        """
        durability = self._durability
        needed = 0
        for op, spec in zip(ops, specs, strict=True):
            if spec is not None and spec.writes:
                needed = max(needed, durability.required(spec, getattr(op, spec.field)))
        if needed:
            await durability.await_replicas(needed, context.time_remaining())

    async def _route_batch(
        self,
        ops: Any,
        specs: list[Op | None],
        pending: list[tuple[int, int]],
        options: CallOptions,
        context: Context,
    ) -> tuple[list[pb.OperationResult | None], list[list[int]]]:
        """Decide each operation of a message, then run it here or plan the rest.

        Returns the results and each operation's slots (for the per-slot counts).
        """
        results: list[pb.OperationResult | None] = [None] * len(ops)
        all_slots: list[list[int]] = []
        held_slots: list[int] = []
        for op, spec in zip(ops, specs, strict=True):
            slots = key_slots(spec.keys(getattr(op, spec.field))) if spec is not None else []
            all_slots.append(slots)
            if spec is not None and spec.writes:
                held_slots += slots
        holds = self._holds
        if held_slots and holds.held(held_slots):
            await holds.wait(held_slots, WRITE_HOLD_MAX_S)
        await self._await_replicas(ops, specs, context)
        view = self._ownership
        decisions = [
            decide(spec, slots, options, view) if spec is not None else None
            for spec, slots in zip(specs, all_slots, strict=True)
        ]
        if all(d is None or type(d) is Local for d in decisions):
            # Everything is served here after all, in message order.
            caller = self._restricted(options)
            for i, op in enumerate(ops):
                results[i] = self._run_op(i, op, specs[i], pending, caller)
        else:
            await self._run_planned(ops, specs, decisions, results, pending, options, context)
        return results, all_slots

    async def _run_planned(
        self,
        ops: Any,
        specs: list[Op | None],
        decisions: list[Decision | None],
        results: list[pb.OperationResult | None],
        pending: list[tuple[int, int]],
        options: CallOptions,
        context: Context,
    ) -> None:
        """Run a message whose operations do not all stay here, segment by segment."""
        planned: list[Planned | None] = []
        caller = self._restricted(options)
        for i, (op, spec, decision) in enumerate(zip(ops, specs, decisions, strict=True)):
            if spec is None or decision is None:
                results[i] = self._run_op(i, op, None, pending)  # unknown: an error result
                planned.append(None)
                continue
            request = getattr(op, spec.field)
            keys = spec.keys(request)
            if type(decision) is not Local:
                # Users: checked here before it leaves, so no split write is half-done.
                if caller is not None and not self._access.permits(caller, spec, request):
                    results[i] = self._access.refused(caller, spec, request, op.id)
                    planned.append(None)
                    continue
                try:
                    self._executor.check(spec, request, keys)
                    if type(decision) is Refused:
                        raise decision.error
                except CommandError as exc:
                    results[i] = pb.OperationResult(id=op.id, error=exc.to_proto())
                    planned.append(None)
                    continue
            planned.append(Planned(keys, spec.writes, spec.multi is not None, decision))
        for segment in plan_batch(planned):
            for i in segment.local:
                results[i] = self._run_op(i, ops[i], specs[i], pending, caller)
            await asyncio.gather(
                *(
                    self._send(address, ops, indices, results, options, context)
                    for address, indices in segment.forward.items()
                ),
                *(
                    self._fan_out(i, ops[i], specs[i], decisions[i], results, options, context)
                    for i in segment.spread
                ),
            )

    def _run_op(
        self,
        index: int,
        op: pb.Operation,
        spec: Op | None,
        pending: list[tuple[int, int]],
        caller: Caller | None = None,
    ) -> pb.OperationResult:
        """Run one operation here; a write that needs replicas is noted in ``pending``.

        With ``caller`` (a user narrowed by patterns or permissions), an
        operation it may not run answers its NOPERM error instead.
        """
        if spec is None:
            return pb.OperationResult(id=op.id, error=unknown_operation().to_proto())
        request = getattr(op, spec.field)
        if caller is not None:
            permitted = caller.user.checks.get(spec.field, not_permitted)
            if permitted is not None and not permitted(request):
                return self._access.refused(caller, spec, request, op.id)
        needed = self._durability.required(spec, request) if spec.writes else 0
        if needed:
            try:
                self._durability.check_available(needed)
            except CommandError as exc:
                return pb.OperationResult(id=op.id, error=exc.to_proto())
        result = self._executor.run_request(spec.field, request, op.id)
        if needed and not result.HasField("error"):
            pending.append((index, needed))
        return result

    async def _send(
        self,
        address: str,
        ops: Any,
        indices: list[int],
        results: list[pb.OperationResult | None],
        options: CallOptions,
        context: Context,
    ) -> None:
        """Forward one owner's operations of a segment as one Pipeline message."""
        sub = pb.PipelineRequest(ops=[ops[i] for i in indices])
        try:
            reply = await self._forwarder.pipeline(
                address,
                sub,
                options.hops + 1,
                context.time_remaining(),
                options.trace,
                self._access.forwarding(options.caller, "Pipeline"),
            )
            for i, result in zip(indices, reply.results, strict=True):
                results[i] = result
        except ForwardError as exc:
            error = exc.to_command_error().to_proto()
            for i in indices:
                results[i] = pb.OperationResult(id=ops[i].id, error=error)

    async def _fan_out(
        self,
        index: int,
        op: pb.Operation,
        spec: Op | None,
        decision: Decision | None,
        results: list[pb.OperationResult | None],
        options: CallOptions,
        context: Context,
    ) -> None:
        """Run a multi-key operation of a message that spans owners, as a unary call would."""
        assert spec is not None and type(decision) is Spread
        result = pb.OperationResult(id=op.id)
        try:
            request = getattr(op, spec.field)
            handler = self._handlers[spec.field]
            reply = await self._spread(spec, decision, handler, request, options, context)
            getattr(result, spec.field).CopyFrom(reply)
        except CommandError as exc:
            result.error.CopyFrom(exc.to_proto())
        results[index] = result

    async def _settle(
        self,
        results: list[pb.OperationResult | None],
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
                result = results[index]
                assert result is not None
                result.CopyFrom(pb.OperationResult(id=result.id, error=exc.to_proto()))
