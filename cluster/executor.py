"""Executes Cache operations against the local keyspace.

This is the one place that turns wire requests into keyspace calls, so the
unary RPCs and the Pipeline stream validate and behave identically. It is
pure: no asyncio and no gRPC calls, only the status codes that name its
errors. Routing (own, forward, redirect) sits in front of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from slotcache.contract import OPS, Op, Reason
from slotcache.v1 import cache_pb2 as pb

from .keyspace import (
    Condition,
    Keyspace,
    NotAnInteger,
    OutOfMemory,
    OutOfRange,
)

log = logging.getLogger(__name__)
_CONDITIONS = {c.value: c for c in Condition}
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
# The keyspace holds deadlines as signed 64-bit absolute milliseconds, so a TTL
# must leave room for "now" (about 1.8e12). 10**15 ms is over 31,000 years.
MAX_TTL_MS = 10**15
_T = TypeVar("_T")


@dataclass
class CommandError(Exception):
    """An operation was refused; nothing was changed."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def to_proto(self) -> pb.Error:
        """The error as carried inside a Pipeline reply."""
        return pb.Error(
            code=self.code.value[0],
            message=self.message,
            reason=self.reason,
            metadata=self.metadata,
        )


def invalid(message: str) -> CommandError:
    """An INVALID_ARGUMENT error."""
    return CommandError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class Limits:
    """Input limits enforced before any state changes."""

    max_key_bytes: int
    max_value_bytes: int

    def check_key(self, key: bytes, what: str = "key") -> None:
        """Refuse empty and oversized keys."""
        if not key:
            raise invalid(f"{what} must not be empty")
        if len(key) > self.max_key_bytes:
            raise invalid(f"{what} is {len(key)} bytes; the limit is {self.max_key_bytes}")

    def check_keys(self, keys: Sequence[bytes]) -> None:
        """Check every key of a multi-key request, naming the first bad one by index.

        The test runs in C (``all``, ``max`` over ``len``): pipelined GETs
        are checked as one run, and a Python step per key would cost more
        than their lookup.
        """
        limit = self.max_key_bytes
        if all(keys) and max(map(len, keys), default=0) <= limit:
            return
        for i, key in enumerate(keys):
            if not key or len(key) > limit:
                self.check_key(key, f"keys[{i}]")

    def check_value(self, value: bytes, what: str = "value") -> None:
        """Refuse oversized values."""
        if len(value) > self.max_value_bytes:
            raise invalid(f"{what} is {len(value)} bytes; the limit is {self.max_value_bytes}")


def check_ttl(ttl_ms: int, what: str = "ttl_ms") -> None:
    """Refuse negative TTLs, and TTLs too large for a deadline to hold."""
    if ttl_ms < 0:
        raise invalid(f"{what} must not be negative (got {ttl_ms})")
    if ttl_ms > MAX_TTL_MS:
        raise invalid(f"{what} must be at most {MAX_TTL_MS} (got {ttl_ms})")


class Executor:
    """Runs validated Cache operations on one keyspace."""

    def __init__(self, keyspace: Keyspace, limits: Limits) -> None:
        self.keyspace = keyspace
        self.limits = limits
        #: Each operation's handler by its Pipeline field name, which is also the
        #: name of the method below and of the OperationResult field its reply fills.
        self.handlers: dict[str, Callable[[Any], Any]] = {name: getattr(self, name) for name in OPS}

    # ---- single key --------------------------------------------------------

    def get(self, req: pb.GetRequest) -> pb.GetReply:
        """Read one key."""
        value = self.get_value(req.key)
        if value is None:
            return pb.GetReply()
        return pb.GetReply(found=True, value=value)

    def get_value(self, key: bytes) -> bytes | None:
        """Get without messages: the Redis-protocol listener's fast path calls this directly."""
        if not key or len(key) > self.limits.max_key_bytes:
            self.limits.check_key(key)
        return self.keyspace.get(key)

    def set(self, req: pb.SetRequest) -> pb.SetReply:
        """Write one key; with ``return_previous``, also answer the value it replaced."""
        key, value, ttl_ms, condition, keep_ttl = self._set_args(req)
        if not req.return_previous:
            return pb.SetReply(applied=self._write(key, value, ttl_ms, condition, keep_ttl))
        # Read and write in one step: nothing can change the key in between.
        previous = self.keyspace.get(key)
        reply = pb.SetReply(applied=self._write(key, value, ttl_ms, condition, keep_ttl))
        if previous is not None:
            reply.previous = previous
        return reply

    def set_value(
        self,
        key: bytes,
        value: bytes,
        ttl_ms: int = 0,
        condition: Condition = Condition.ALWAYS,
        keep_ttl: bool = False,
    ) -> bool:
        """Set without messages, validated as Set is (the Redis-protocol fast path)."""
        self._check_set(key, value, ttl_ms, keep_ttl, None)
        return self._write(key, value, ttl_ms, condition, keep_ttl)

    def get_values(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """GETs without messages (the Redis-protocol fast path); no key is read if one is bad."""
        self.limits.check_keys(keys)
        return self.keyspace.get_many(keys)

    def put_value(self, key: bytes, value: bytes) -> None:
        """One plain SET without messages: the fast path of a client that does not pipeline."""
        limits = self.limits
        if not key or len(key) > limits.max_key_bytes or len(value) > limits.max_value_bytes:
            self._check_set(key, value, 0, False, None)
        try:
            self.keyspace.put(key, value)
        except OutOfMemory as exc:
            raise _out_of_memory(exc) from None

    def put_values(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """Plain SETs without messages (the Redis-protocol fast path), in order.

        Every key and value is checked before any is written. Out of memory,
        the keys before the one that did not fit stay written.
        """
        self.limits.check_keys(keys)
        limit = self.limits.max_value_bytes
        if max(map(len, values), default=0) > limit:
            for i, value in enumerate(values):
                self.limits.check_value(value, f"values[{i}]")
        try:
            self.keyspace.put_many(keys, values)
        except OutOfMemory as exc:
            raise _out_of_memory(exc) from None

    def _write(
        self, key: bytes, value: bytes, ttl_ms: int, condition: Condition, keep_ttl: bool
    ) -> bool:
        # Every Set comes here: no closure per call, unlike the other writes' _memory_guard.
        try:
            return self.keyspace.set(
                key, value, ttl_ms=ttl_ms, condition=condition, keep_ttl=keep_ttl
            )
        except OutOfMemory as exc:
            raise _out_of_memory(exc) from None

    def delete(self, req: pb.DeleteRequest) -> pb.DeleteReply:
        """Remove one key."""
        self.limits.check_key(req.key)
        return pb.DeleteReply(deleted=self.keyspace.delete(req.key))

    def exists(self, req: pb.ExistsRequest) -> pb.ExistsReply:
        """Report whether a key is held."""
        self.limits.check_key(req.key)
        return pb.ExistsReply(exists=self.keyspace.exists(req.key))

    def expire(self, req: pb.ExpireRequest) -> pb.ExpireReply:
        """Set or clear a TTL."""
        self.limits.check_key(req.key)
        check_ttl(req.ttl_ms)
        if req.clear:
            if req.ttl_ms:
                raise invalid("ttl_ms must be 0 when clear is set")
            return pb.ExpireReply(applied=self.keyspace.persist(req.key))
        if req.ttl_ms == 0:
            raise invalid("ttl_ms must be > 0; set clear to remove a TTL")
        return pb.ExpireReply(applied=self.keyspace.expire(req.key, req.ttl_ms))

    def ttl(self, req: pb.TtlRequest) -> pb.TtlReply:
        """Read the remaining TTL."""
        self.limits.check_key(req.key)
        remaining = self.keyspace.pttl(req.key)
        if remaining == -2:
            return pb.TtlReply()
        if remaining == -1:
            return pb.TtlReply(found=True)
        return pb.TtlReply(found=True, has_ttl=True, ttl_ms=remaining)

    def incr(self, req: pb.IncrRequest) -> pb.IncrReply:
        """Add a delta to an integer value."""
        self.limits.check_key(req.key)
        try:
            value = _memory_guard(lambda: self.keyspace.incr(req.key, req.delta))
        except NotAnInteger as exc:
            raise CommandError(FAILED_PRECONDITION, str(exc), Reason.NOT_INTEGER) from None
        except OutOfRange as exc:
            raise CommandError(FAILED_PRECONDITION, str(exc), Reason.INTEGER_OVERFLOW) from None
        return pb.IncrReply(value=value)

    # ---- multi key ---------------------------------------------------------

    def mget(self, req: pb.MGetRequest) -> pb.MGetReply:
        """Read many keys in request order."""
        keys = req.keys
        self.limits.check_keys(keys)
        reply = pb.MGetReply()
        results = reply.results
        for value in self.keyspace.get_many(keys):
            if value is None:
                results.add()
            else:
                results.add(found=True, value=value)
        return reply

    def check_mset(self, req: pb.MSetRequest) -> list[tuple[bytes, bytes, int, Condition, bool]]:
        """Validate every entry of an MSet, naming the first bad one."""
        set_args = self._set_args
        return [set_args(e, i) for i, e in enumerate(req.entries)]

    def mset(self, req: pb.MSetRequest) -> pb.MSetReply:
        """Write many keys: all entries are validated before any is written."""
        entries = self.check_mset(req)
        applied = _memory_guard(lambda: self.keyspace.set_many(entries))
        return pb.MSetReply(applied=applied)

    def mdelete(self, req: pb.MDeleteRequest) -> pb.MDeleteReply:
        """Remove many keys."""
        self.limits.check_keys(req.keys)
        return pb.MDeleteReply(deleted=self.keyspace.delete_many(req.keys))

    def check(self, op: Op, request: Any, keys: Sequence[bytes]) -> None:
        """Validate a request that is about to leave this node, as its owner would.

        A node that forwards or splits a request checks it first, with the
        owner's own checks and messages, so bad input fails the same way
        whichever node receives it, and a split request is refused whole
        rather than written in part.
        """
        if op.field == "mset":
            self.check_mset(request)
        elif op.multi is not None:
            self.limits.check_keys(keys)
        else:
            self.limits.check_key(keys[0])

    # ---- pipeline ----------------------------------------------------------

    def run(self, op: pb.Operation) -> pb.OperationResult:
        """Run one Pipeline operation; failures become an ``error`` result."""
        kind = op.WhichOneof("op")
        if kind is None or kind not in self.handlers:
            return pb.OperationResult(id=op.id, error=unknown_operation().to_proto())
        return self.run_request(kind, getattr(op, kind), op.id)

    def run_request(self, kind: str, request: Any, op_id: int) -> pb.OperationResult:
        """Run the request of a Pipeline operation named ``kind``; failures become an error."""
        try:
            reply = self.handlers[kind](request)
        except CommandError as exc:
            return pb.OperationResult(id=op_id, error=exc.to_proto())
        except Exception as exc:
            # One broken operation must not end a stream that carries other callers' work.
            log.exception("operation %s failed unexpectedly", kind)
            error = CommandError(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
            return pb.OperationResult(id=op_id, error=error.to_proto())
        result = pb.OperationResult(id=op_id)
        getattr(result, kind).CopyFrom(reply)
        return result

    # ---- helpers -----------------------------------------------------------

    def _set_args(
        self, req: pb.SetRequest, index: int | None = None
    ) -> tuple[bytes, bytes, int, Condition, bool]:
        """Validate one Set; ``index`` names the entry of an MSet in error messages.

        The checks run inline and field names are formatted only on failure:
        an MSet validates every entry before writing any, and that must stay
        cheap for large batches.
        """
        key, value, ttl_ms, keep_ttl = req.key, req.value, req.ttl_ms, req.keep_ttl
        self._check_set(key, value, ttl_ms, keep_ttl, index)
        condition = _CONDITIONS.get(req.condition)
        if condition is None:
            field = _field(index, "condition")
            raise invalid(f"{field} {req.condition} is not a known SetCondition")
        if index is not None and req.return_previous:
            raise invalid(f"{_field(index, 'return_previous')} is not allowed in an MSet")
        return key, value, ttl_ms, condition, keep_ttl

    def _check_set(
        self, key: bytes, value: bytes, ttl_ms: int, keep_ttl: bool, index: int | None
    ) -> None:
        limits = self.limits
        if not key or len(key) > limits.max_key_bytes:
            limits.check_key(key, _field(index, "key"))
        if len(value) > limits.max_value_bytes:
            limits.check_value(value, _field(index, "value"))
        if ttl_ms < 0 or ttl_ms > MAX_TTL_MS:
            check_ttl(ttl_ms, _field(index, "ttl_ms"))
        if keep_ttl and ttl_ms:
            keep, ttl = _field(index, "keep_ttl"), _field(index, "ttl_ms")
            raise invalid(f"{keep} and {ttl} cannot both be set")


def _field(index: int | None, name: str) -> str:
    """A field's name as error messages show it: ``ttl_ms`` or ``entries[3].ttl_ms``."""
    return name if index is None else f"entries[{index}].{name}"


def unknown_operation() -> CommandError:
    """The error for a Pipeline operation this server does not know."""
    return invalid("unknown operation: the op field is unset or not supported by this server")


def _memory_guard(write: Callable[[], _T]) -> _T:
    try:
        return write()
    except OutOfMemory as exc:
        raise _out_of_memory(exc) from None


def _out_of_memory(exc: OutOfMemory) -> CommandError:
    return CommandError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), Reason.OOM)
