"""Hypothesis strategies for protobuf messages, and raw gRPC calls that send any bytes.

The strategies are built from the message descriptors alone, so every
request type of every service gets random values of the right wire type:
integers at and past their edges, enums outside their known values, slot
numbers around 0..16383, empty, oversized and huge bytes, short and long
repeated fields, oneofs with one member or none. ``garbled`` turns any such
strategy into bytes that may not parse at all (random bytes, or a valid
encoding flipped, cut or spliced).

:class:`RawMethod` calls a method by its path with identity serializers, so
what goes on the wire is exactly the bytes drawn, whatever the RPC's kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

SLOTS = 16384
KIB = 1024
# A value past the default key limit, and one big enough to cost the node real work.
OVERSIZED = 64 * KIB + 1
HUGE = 256 * KIB
MAX_REPEATED = 3
MAX_DEPTH = 4
# Names of integer fields that hold slot numbers (ranges, lists of pairs, single slots).
SLOT_FIELDS = frozenset({"slot", "slots", "start", "end"})
# Field values one test wants to pin (by full field name: "slotcache.v1.MeetRequest.host").
Overrides = Mapping[str, st.SearchStrategy[Any]]

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Any integer of the range, with its edges and small values drawn often."""
    edges = sorted({v for v in (0, 1, -1, low, high, low + 1, high - 1) if low <= v <= high})
    small = st.integers(max(low, -300), min(high, 300))
    return st.one_of(st.sampled_from(edges), small, st.integers(low, high))


def slot_numbers() -> st.SearchStrategy[int]:
    """Slot numbers: valid ones, the edges of the range, and far outside it."""
    return st.one_of(
        st.integers(0, SLOTS - 1),
        st.sampled_from([0, SLOTS - 1, SLOTS, SLOTS + 1, 2**31, 2**32 - 1]),
    )


def byte_strings(pool: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """Short random bytes mostly; sometimes empty, oversized, huge, or one of ``pool``."""
    special = [b"", b"\x00", b"{}", b"x" * OVERSIZED, b"y" * HUGE, *pool]
    return st.one_of(st.binary(max_size=24), st.binary(max_size=24), st.sampled_from(special))


def texts(pool: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Short random text; sometimes empty, long, an address, or one of ``pool``."""
    special = ["", "127.0.0.1", "0" * 40, "z" * 2000, *pool]
    return st.one_of(st.text(max_size=16), st.sampled_from(special))


@dataclass(frozen=True)
class Pools:
    """Values worth drawing often: the ids of real nodes, so deep code paths are reached."""

    ids: tuple[bytes, ...] = ()

    @property
    def hex_ids(self) -> tuple[str, ...]:
        return tuple(i.hex() for i in self.ids)


def messages(
    descriptor: Descriptor,
    overrides: Overrides | None = None,
    pools: Pools = Pools(),
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Random messages of ``descriptor``'s type, any field set or not."""
    cls = GetMessageClass(descriptor)
    overrides = overrides or {}
    values = {f: _values(f, overrides, pools, depth) for f in descriptor.fields}
    plain = [f for f in descriptor.fields if f.containing_oneof is None and values[f] is not None]
    oneofs = [[f for f in o.fields if values[f] is not None] for o in descriptor.oneofs]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        chosen = [f for f in plain if draw(st.booleans())]
        for members in oneofs:
            member = draw(st.none() | st.sampled_from(members)) if members else None
            if member is not None:
                chosen.append(member)
        for f in chosen:
            strategy = values[f]
            assert strategy is not None
            _fill(draw, message, f, strategy)
        return message

    return build()


def _fill(
    draw: st.DrawFn, message: Message, f: FieldDescriptor, values: st.SearchStrategy[Any]
) -> None:
    if f.is_repeated:
        items = draw(st.lists(values, max_size=MAX_REPEATED))
        container = getattr(message, f.name)
        if f.message_type is not None:
            for item in items:
                container.add().CopyFrom(item)
        else:
            container.extend(items)
    elif f.message_type is not None:
        getattr(message, f.name).CopyFrom(draw(values))
    else:
        setattr(message, f.name, draw(values))


def _values(
    f: FieldDescriptor, overrides: Overrides, pools: Pools, depth: int
) -> st.SearchStrategy[Any] | None:
    """The strategy for one value of ``f``; None when nesting went deep enough."""
    if f.full_name in overrides:
        return overrides[f.full_name]
    if f.message_type is not None:
        if depth >= MAX_DEPTH or f.message_type.GetOptions().map_entry:
            return None  # deep enough; and no request carries a map
        return messages(f.message_type, overrides, pools, depth + 1)
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-(2**31), 2**31 - 1))
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_BYTES:
        return byte_strings(pools.ids)
    if f.type == FieldDescriptor.TYPE_STRING:
        return texts(pools.hex_ids)
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    low, high = _INT_RANGES[f.type]
    if f.name in SLOT_FIELDS and low == 0:
        return slot_numbers()
    return integers(low, high)


def garbled(valid: st.SearchStrategy[Message]) -> st.SearchStrategy[bytes]:
    """Bytes that may not parse: random ones, or a valid encoding flipped, cut or spliced."""

    @st.composite
    def mangle(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid).SerializeToString())
        how = draw(st.sampled_from(["flip", "cut", "splice", "tag"]))
        if how == "flip" and data:
            for _ in range(draw(st.integers(1, 4))):
                data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif how == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif how == "splice":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            # A field number and wire type the message does not have, or an overlong length.
            data += draw(
                st.sampled_from([b"\xf8\xff\xff\xff\x0f\x01", b"\x0a\xff\xff\xff\xff\x0f"])
            )
        return bytes(data)

    return st.one_of(st.binary(max_size=64), mangle())


def decodes_as(descriptor: Descriptor, raw: bytes) -> Message | None:
    """``raw`` parsed as ``descriptor``'s type, or None when it is not a valid encoding."""
    message = GetMessageClass(descriptor)()
    try:
        message.ParseFromString(raw)
    except DecodeError:
        return None
    return message


# ---- sending -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one raw call came back with: its status code and, for streams, what was read."""

    code: grpc.StatusCode
    replies: tuple[bytes, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK


def _identity(raw: bytes) -> bytes:
    return raw


class RawMethod:
    """One RPC of a node called with raw bytes; streams send a list and read a few replies.

    A stream the node keeps open (a valid Subscribe, a replication stream)
    is read for ``window`` seconds and then cancelled, as a client going away.
    """

    def __init__(
        self, channel: grpc.aio.Channel, method: MethodDescriptor, window: float = 0.3
    ) -> None:
        self.method = method
        self.path = f"/{method.containing_service.full_name}/{method.name}"
        self.window = window
        kinds: dict[tuple[bool, bool], Callable[..., Any]] = {
            (False, False): channel.unary_unary,
            (False, True): channel.unary_stream,
            (True, False): channel.stream_unary,
            (True, True): channel.stream_stream,
        }
        make = kinds[(method.client_streaming, method.server_streaming)]
        self._call = make(self.path, request_serializer=_identity, response_deserializer=_identity)

    async def __call__(self, requests: Sequence[bytes], timeout: float = 5.0) -> Outcome:
        """Send ``requests`` (a stream's messages, or one request) and say how it ended."""
        method = self.method
        request: Any = requests[0] if not method.client_streaming else iter(requests)
        call = self._call(request, timeout=timeout)
        replies: list[bytes] = []
        try:
            if not method.server_streaming:
                replies.append(await call)
            else:
                await asyncio.wait_for(self._read(call, replies), self.window)
        except TimeoutError:
            call.cancel()
            return Outcome(grpc.StatusCode.OK, tuple(replies))
        except grpc.aio.AioRpcError as exc:
            return Outcome(exc.code(), tuple(replies))
        return Outcome(grpc.StatusCode.OK, tuple(replies))

    @staticmethod
    async def _read(call: Any, replies: list[bytes]) -> None:
        async for reply in call:
            replies.append(reply)
