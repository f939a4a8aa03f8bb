"""The gRPC side of near-cache invalidation: Subscribe streams and tracked reads.

The state and every decision live in :class:`~cluster.tracking.hub.TrackingHub`;
this module moves messages and watches time:

- :meth:`Tracking.subscribe` serves one ``Subscribe`` stream: it writes the
  first message, then sleeps until the hub wakes it and writes the next
  batch. One message is in flight at a time, so a client that reads slowly
  is pushed back by HTTP/2 flow control, its invalidations pile up in its
  outbox, and the outbox's bound turns them into a flush.
- :meth:`Tracking.tracked_read` and :meth:`Tracking.for_pipeline` let the
  Cache service register the keys of reads that carry ``slotcache-track``.
  Such reads are never forwarded (their routing options force redirects):
  a value read on another node would change without this node hearing of
  it, so a key served elsewhere is answered with MOVED.
- a watcher task notices when the slots this node serves change (claims,
  failovers, role changes) even when no key of a lost slot was held, and a
  releaser task frees departed subscribers' registrations in small steps.

Ordering, which the client's placeholder technique relies on: a tracked read
registers its keys in the same event-loop step in which it runs, so before
its reply is sent; a later change queues the key for the stream, which
writes it on its next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeAlias

import grpc

from slotcache.contract import OPS, SLOT_COUNT, TRACK_KEY, Op, Reason, key_slot, to_ranges
from slotcache.v1 import cache_pb2 as pb

from ..executor import CommandError, Limits, invalid
from ..ownership import Ownership
from ..routing import CallOptions, call_options
from ..security.limits import InputLimits
from ..services.status import abort
from ..tracking.hub import Mode, Subscriber, TrackingHub
from ..tracking.outbox import Batch

log = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = Callable[[Any], Any]

SHUTTING_DOWN = "the node is shutting down; subscribe again (elsewhere)"
# How often the served slots are compared with the membership's view.
OWNERSHIP_CHECK_S = 0.1
# Departed registrations released per event-loop step (about 1 ms of work).
RELEASE_BUDGET = 5000
_MODES = {pb.TRACKING_MODE_KEYS: Mode.KEYS, pb.TRACKING_MODE_BROADCAST: Mode.BROADCAST}


def no_subscription(sub_id: str) -> CommandError:
    """The error for a tracked read naming a subscription that is not open here."""
    return CommandError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"subscription {sub_id!r} is not open on this node; subscribe again",
        Reason.NO_SUBSCRIPTION,
        {"subscription_id": sub_id},
    )


def subscription_id(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The ``slotcache-track`` value of a call's metadata, if any."""
    for key, value in metadata or ():
        if key == TRACK_KEY:
            return str(value)
    return None


def served_ranges(ownership: Ownership) -> list[tuple[int, int]]:
    """The slots whose every write this node applies: its own, and its primary's if a replica."""
    membership = ownership.membership
    ranges = membership.slot_ranges(membership.id)
    primary = membership.myself.primary_id
    if primary:
        ranges += membership.slot_ranges(primary)
    return ranges


def parse_subscribe(request: pb.SubscribeRequest) -> tuple[Mode, list[int]]:
    """Validate a SubscribeRequest: its mode and, for broadcast, the watched slots."""
    mode = _MODES.get(request.mode)
    if mode is None:
        raise invalid(f"mode {request.mode} is not a known TrackingMode")
    if mode is Mode.KEYS and request.slots:
        raise invalid("slots are only for TRACKING_MODE_BROADCAST")
    slots: list[int] = []
    for r in request.slots:
        if not r.start <= r.end < SLOT_COUNT:
            raise invalid(f"slot range {r.start}-{r.end} is outside 0..{SLOT_COUNT - 1}")
        slots.extend(range(r.start, r.end + 1))
    return mode, slots


def to_message(batch: Batch) -> pb.Invalidation:
    """A batch as it goes on the wire."""
    message = pb.Invalidation(seq=batch.seq, keys=batch.keys)
    if batch.slots:
        message.slots.extend(pb.SlotRange(start=s, end=e) for s, e in to_ranges(batch.slots))
    if batch.flush:
        message.flush = True
        message.flush_reason = pb.FLUSH_REASON_OVERFLOW
    return message


async def _write(context: Context, message: pb.Invalidation, sub: Subscriber) -> bool:
    """Write one message; False when the stream broke (the client went away: routine).

    grpc raises a private error class here and has not yet marked the call
    done or cancelled, so any failure ends the subscription: a stream that
    lost a message cannot keep its gap-free promise anyway, and the client
    resubscribes when it sees the stream end.
    """
    try:
        await context.write(message)
    except Exception as exc:
        log.info("subscription %s ended: writing to its stream failed (%s)", sub.id[:8], exc)
        return False
    return True


class PipelineTracking:
    """The tracked reads of one Pipeline stream opened with ``slotcache-track``."""

    def __init__(self, tracking: Tracking, sub: Subscriber, options: CallOptions) -> None:
        self._tracking = tracking
        self.sub = sub
        # The stream's routing options, redirects forced (see the module doc).
        self.options = options

    def before_batch(self, batch: pb.PipelineRequest) -> None:
        """Register the batch's local reads before any of its operations runs.

        Registering first keeps the guarantee however the batch's operations
        interleave with waits (a write may wait for replicas); the price is an
        occasional needless invalidation, for instance when the same batch
        writes the key after reading it. Raises NO_SUBSCRIPTION, before
        anything runs, once the subscription is gone.
        """
        sub = self.sub
        if sub.closed:
            raise no_subscription(sub.id)
        track = self._tracking.hub.track
        is_local = self._tracking.ownership.is_local
        max_key = self._tracking.limits.max_key_bytes
        for op in batch.ops:
            kind = op.WhichOneof("op")
            spec = OPS.get(kind) if kind else None
            if spec is None or spec.writes:
                continue
            for key in spec.keys(getattr(op, spec.field)):
                if 0 < len(key) <= max_key:
                    slot = key_slot(key)
                    if is_local(slot):
                        track(sub, slot, key)


class Tracking:
    """Subscribe streams, tracked reads and the tasks that keep the hub's view current."""

    def __init__(
        self, hub: TrackingHub, ownership: Ownership, limits: Limits, input_limits: InputLimits
    ) -> None:
        self.hub = hub
        self.ownership = ownership
        self.limits = limits
        # Bounds the open Subscribe streams.
        self.input_limits = input_limits
        self._served: list[tuple[int, int]] | None = None
        self._stopped = False
        self._release_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start watching slot ownership and releasing departed registrations."""
        self.check_served()
        self._tasks.append(asyncio.create_task(self._watch_ownership(), name="tracking-owner"))
        self._tasks.append(asyncio.create_task(self._release_loop(), name="tracking-release"))

    async def stop(self) -> None:
        """End every subscription (clients see UNAVAILABLE) and drop all tracking state."""
        self._stopped = True
        self.hub.close_all()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def release_later(self) -> None:
        """A subscription ended or was flushed elsewhere (RESP): free its registrations soon."""
        self._release_wanted.set()

    def slots_lost(self, slots: Iterable[int]) -> None:
        """The membership gave some of this node's slots to another node."""
        self.hub.slots_lost(slots)

    def check_served(self) -> None:
        """Compare the slots served now with the hub's view; invalidate the ones lost."""
        served = served_ranges(self.ownership)
        if served != self._served:
            self._served = served
            lost = self.hub.set_served(served)
            if lost and self.hub.subscribers:
                log.info("tracking: %d slots no longer served here", len(lost))

    async def _watch_ownership(self) -> None:
        while True:
            await asyncio.sleep(OWNERSHIP_CHECK_S)
            try:
                self.check_served()
            except Exception:
                log.exception("tracking: checking the served slots failed")

    async def _release_loop(self) -> None:
        while True:
            await self._release_wanted.wait()
            self._release_wanted.clear()
            while self.hub.release(RELEASE_BUDGET):
                await asyncio.sleep(0)

    # ---- the Subscribe stream ------------------------------------------------------

    async def subscribe(self, request: pb.SubscribeRequest, context: Context) -> None:
        """Serve one Subscribe stream until the client leaves or the node stops."""
        try:
            mode, slots = parse_subscribe(request)
            self.input_limits.check_subscribers(len(self.hub.subscribers))
            if self._stopped:
                # A stream opened now would only hold the server's drain until its grace ends.
                raise CommandError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        except CommandError as exc:
            await abort(context, exc)
            return
        hub = self.hub
        wake = asyncio.Event()
        sub = hub.subscribe(mode, slots, wake.set)
        try:
            first = pb.Invalidation(
                seq=hub.first_seq(sub),
                subscription_id=sub.id,
                node_id=self.ownership.membership.myself.hex_id,
            )
            if not await _write(context, first, sub):
                return
            while not sub.closed:
                batch = hub.next_batch(sub)
                if batch is None:
                    wake.clear()
                    await wake.wait()
                else:
                    if batch.flush:  # the subscriber's registrations were reset: free them
                        self._release_wanted.set()
                    if not await _write(context, to_message(batch), sub):
                        return
        finally:
            hub.unsubscribe(sub)
            self._release_wanted.set()
        context.set_code(grpc.StatusCode.UNAVAILABLE)
        context.set_details(SHUTTING_DOWN)

    # ---- tracked reads -------------------------------------------------------------

    def tracked_read(
        self, op: Op, handler: Handler, context: Context
    ) -> tuple[Handler, CallOptions] | None:
        """For a unary read with ``slotcache-track``: a handler that registers, and routing.

        None when the call does not ask for tracking. The handler registers
        the read's keys right after it ran, in the same loop step, so before
        the reply leaves. The options force MOVED for keys served elsewhere.
        Raises NO_SUBSCRIPTION for an id that is not open.
        """
        metadata = context.invocation_metadata()
        sub_id = subscription_id(metadata)
        if sub_id is None:
            return None
        sub = self._open(sub_id)
        track = self.hub.track

        def run(request: Any) -> Any:
            reply = handler(request)
            for key in op.keys(request):
                track(sub, key_slot(key), key)
            return reply

        return run, replace(call_options(metadata), redirect=True)

    def for_pipeline(self, context: Context) -> PipelineTracking | None:
        """Tracking for a Pipeline stream opened with ``slotcache-track``, else None."""
        metadata = context.invocation_metadata()
        sub_id = subscription_id(metadata)
        if sub_id is None:
            return None
        sub = self._open(sub_id)
        return PipelineTracking(self, sub, replace(call_options(metadata), redirect=True))

    def _open(self, sub_id: str) -> Subscriber:
        sub = self.hub.get(sub_id)
        if sub is None:
            raise no_subscription(sub_id)
        return sub

    # ---- reporting -----------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """The ``tracking.*`` counters of the Info RPC."""
        return self.hub.counters()
