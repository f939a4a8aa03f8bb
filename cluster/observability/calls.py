"""The request path's one telemetry hook: per-call counting in plain lists and dicts.

:class:`CallRecorder` is called once per unary call and once per Pipeline
message (looping over its operations). It keeps latency buckets and sums
per operation and status, errors by reason, per-slot operation counts and
byte counts, and decides which calls reach the slow log, the access log
(always when failed or slow, else one in N) and the hot-key sampler. The
exporters read these fields at collection time.
"""

from __future__ import annotations

import operator
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, Protocol

import grpc

from slotcache.contract import OPS_BY_RPC, SLOT_COUNT, Op, Reason, key_slot

from .access_log import AccessLog, Entry
from .hotkeys import HotKeys
from .latency import bucket, new_buckets
from .slowlog import SlowLog

OK = "OK"
UNKNOWN_OP = "Unknown"
# The protocol a call came in by: the label that keeps gRPC and RESP series apart.
GRPC = "grpc"
RESP = "resp"
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_perf_ns = time.perf_counter_ns
_HAS_ERROR = operator.methodcaller("HasField", "error")
_GET, _SET = OPS_BY_RPC["Get"].rpc, OPS_BY_RPC["Set"].rpc
Series = tuple[str, str, str]
"""(method, status code name, protocol): one latency series."""
Served = tuple[str, Sequence[bytes], Sequence[int] | None, str, str]
"""One command of a non-gRPC connection: (method, keys, slots or None, status, reason)."""


def sampled_positions(left: int, every: int, n: int) -> tuple[range, int]:
    """``n`` steps of a 1-in-``every`` sampler at once: the positions taken, and the count left.

    The same choice as calling :func:`countdown` ``n`` times, without a
    Python call per step: the first position taken is ``left - 1``, then
    every ``every``-th after it.
    """
    taken = range(left - 1, n, every)
    if not taken:
        return taken, left - n
    return taken, every - (n - 1 - taken[-1])


def countdown(left: int, every: int) -> tuple[bool, int]:
    """One step of a 1-in-``every`` sampler: whether this one is taken, and the count left."""
    left -= 1
    if left:
        return False, left
    return True, every


class _Failure(Protocol):
    code: grpc.StatusCode
    reason: str


class _Peer(Protocol):
    def peer(self) -> str: ...


class CallRecorder:
    """Counts every served operation; everything here is a plain int, list or dict."""

    def __init__(
        self,
        slowlog: SlowLog,
        access: AccessLog | None = None,
        hotkeys: HotKeys | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.slowlog = slowlog
        self.access = access
        self.hotkeys = hotkeys
        self._wall_ns = wall_ns
        self.latency: dict[Series, list[int]] = {}
        self.latency_sum_ns: defaultdict[Series, int] = defaultdict(int)
        # (method, code name, reason, protocol) -> count; the reason is "" when none is given.
        self.errors: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.slot_ops = [0] * SLOT_COUNT
        self.bytes_in = 0
        self.bytes_out = 0
        self.redirected = 0
        self.fanned_out = 0
        self.streams_open = 0
        #: Operations counted so far, whatever their outcome (migration pacing reads it).
        self.ops_total = 0
        self._slow_ns = slowlog.threshold_us * 1000
        # Countdowns to the next sampled call: the access log's, and the hot keys'.
        self._countdown = access.sample if access is not None else 0
        self._hot_left = hotkeys.sample if hotkeys is not None else 0

    def started(self) -> int:
        """The clock reading a call's latency is measured from."""
        return _perf_ns()

    def unary(
        self,
        op: Op,
        started_ns: int,
        keys: Sequence[bytes] | None,
        slots: Sequence[int] | None,
        request: Any,
        reply: Any,
        error: _Failure | None,
        context: _Peer,
    ) -> None:
        """Count one unary call (``reply`` is None when it failed with ``error``).

        ``keys`` and ``slots`` are None when the call was served without
        routing (the node owns every slot): keys are then read only for a
        sampled or logged call, and per-slot counts are not kept.
        """
        elapsed = _perf_ns() - started_ns
        method = op.rpc
        status, reason = (OK, "") if error is None else (error.code.name, error.reason)
        self._observe(method, status, elapsed, 1)
        if slots is not None:
            slot_ops = self.slot_ops
            for slot in slots:
                slot_ops[slot] += 1
        size_in = request.ByteSize()
        size_out = reply.ByteSize() if reply is not None else 0
        self.bytes_in += size_in
        self.bytes_out += size_out
        if error is not None:
            self._failed(method, status, reason)
        hot = self.hotkeys
        if hot is not None:
            self._hot_left -= 1
            if not self._hot_left:
                self._hot_left = hot.sample
                for key in op.keys(request) if keys is None else keys:
                    hot.add(key)
        slow = elapsed >= self._slow_ns
        if (slow or self.access is not None) and self._wanted(slow, status):
            if keys is None:
                keys = op.keys(request)
            sizes = (size_in, size_out)
            self._emit(method, keys, slots, status, reason, elapsed, sizes, context.peer())

    def batch(
        self,
        specs: Sequence[Op | None],
        ops: Sequence[Any],
        results: Sequence[Any],
        slots: Sequence[Sequence[int]] | None,
        started_ns: int,
        size_in: int,
        size_out: int,
        context: _Peer,
    ) -> None:
        """Count one Pipeline message, per operation; each op's latency is the message's.

        ``slots`` is None when the message was served without routing.

        This runs for every operation a node serves through Pipeline, so the
        per-operation work stays in C: the error test is a ``map``, the
        per-method counts a ``Counter``, and the samplers pick their
        operations by arithmetic (:func:`sampled_positions`) instead of stepping a
        countdown per operation. Only failed and sampled operations cost
        Python code of their own, and those are few.
        """
        elapsed = _perf_ns() - started_ns
        self.bytes_in += size_in
        self.bytes_out += size_out
        n = len(ops)
        failed = list(map(_HAS_ERROR, results))
        errors = [i for i, bad in enumerate(failed) if bad] if True in failed else []
        if errors:
            ok_indices: Sequence[int] = [i for i, bad in enumerate(failed) if not bad]
            ok_specs: Sequence[Op | None] = [specs[i] for i in ok_indices]
        else:
            ok_indices, ok_specs = range(n), specs
        for spec, count in Counter(ok_specs).items():
            self._observe(spec.rpc if spec is not None else UNKNOWN_OP, OK, elapsed, count)
        if slots is not None:
            slot_ops = self.slot_ops
            for slot in chain.from_iterable(slots):
                slot_ops[slot] += 1
        hot = self.hotkeys
        if hot is not None:
            if n < self._hot_left:
                self._hot_left -= n  # none taken: no range built
            else:
                picks, self._hot_left = sampled_positions(self._hot_left, hot.sample, n)
                for i in picks:
                    spec = specs[i]
                    if spec is not None:
                        for key in spec.keys(getattr(ops[i], spec.field)):
                            hot.add(key)
        slow = elapsed >= self._slow_ns
        emitted: Sequence[int] = errors
        for i in errors:
            spec = specs[i]
            error = results[i].error
            method = spec.rpc if spec is not None else UNKNOWN_OP
            status = _CODE_NAMES.get(error.code, "UNKNOWN")
            self._failed(method, status, error.reason)
            self._observe(method, status, elapsed, 1)
        if slow:
            emitted = range(n)  # every operation is logged
        elif self.access is not None:
            ok_count = len(ok_indices)
            if ok_count < self._countdown:
                self._countdown -= ok_count  # the usual message: none of it sampled
            else:
                picks, self._countdown = sampled_positions(
                    self._countdown, self.access.sample, ok_count
                )
                # Without errors the successful operations are all of them, in order.
                emitted = sorted([*errors, *(ok_indices[j] for j in picks)]) if errors else picks
        if emitted:
            self._emit_ops(emitted, specs, ops, results, slots, elapsed, size_in, size_out, context)

    def _emit_ops(
        self,
        indices: Sequence[int],
        specs: Sequence[Op | None],
        ops: Sequence[Any],
        results: Sequence[Any],
        slots: Sequence[Sequence[int]] | None,
        elapsed: int,
        size_in: int,
        size_out: int,
        context: _Peer,
    ) -> None:
        """Log some of a message's operations, in message order, with the message's byte shares."""
        n = max(len(ops), 1)
        shares = (size_in // n, size_out // n)
        peer = context.peer()
        for i in indices:
            spec = specs[i]
            result = results[i]
            if result.HasField("error"):
                status = _CODE_NAMES.get(result.error.code, "UNKNOWN")
                reason = result.error.reason
            else:
                status, reason = OK, ""
            method = spec.rpc if spec is not None else UNKNOWN_OP
            keys = spec.keys(getattr(ops[i], spec.field)) if spec is not None else []
            op_slots = slots[i] if slots is not None else None
            self._emit(method, keys, op_slots, status, reason, elapsed, shares, peer)

    def commands(
        self,
        protocol: str,
        served: Sequence[Served],
        started_ns: int,
        size_in: int,
        size_out: int,
        peer: str,
        gets: Sequence[bytes] = (),
        sets: Sequence[bytes] = (),
    ) -> None:
        """Count the commands answered from one read of a Redis-protocol connection.

        They are counted as a Pipeline message's operations are: each one's
        latency is the read's, per-series counts reach the buckets once, and
        they land in the same series, errors, logs and samplers as gRPC
        calls, apart only by their ``protocol`` label.

        ``gets`` and ``sets`` hold the keys of the plain GETs and SETs that
        succeeded without routing, one key per command: a read of many of
        them then costs a few list appends, and the samplers pick their
        commands by arithmetic rather than by a step per command.
        """
        elapsed = _perf_ns() - started_ns
        self.bytes_in += size_in
        self.bytes_out += size_out
        n = len(served) + len(gets) + len(sets)
        shares = (size_in // n, size_out // n) if n > 1 else (size_in, size_out)
        if served:
            self._served(protocol, served, elapsed, shares, peer)
        if gets:
            self._plain(_GET, gets, elapsed, shares, peer, protocol)
        if sets:
            self._plain(_SET, sets, elapsed, shares, peer, protocol)

    def _plain(
        self,
        method: str,
        keys: Sequence[bytes],
        elapsed: int,
        shares: tuple[int, int],
        peer: str,
        protocol: str,
    ) -> None:
        """Count successful single-key commands of one read: samplers step by arithmetic."""
        count = len(keys)
        self._observe(method, OK, elapsed, count, protocol)
        hot = self.hotkeys
        if hot is not None:
            if count < self._hot_left:
                self._hot_left -= count  # none taken: the usual read, with no range built
            else:
                taken, self._hot_left = sampled_positions(self._hot_left, hot.sample, count)
                for i in taken:
                    hot.add(keys[i])
        slow = elapsed >= self._slow_ns
        if slow or self.access is not None:
            self._log_plain(method, keys, slow, elapsed, shares, peer, protocol)

    def _served(
        self,
        protocol: str,
        served: Sequence[Served],
        elapsed: int,
        shares: tuple[int, int],
        peer: str,
    ) -> None:
        """Count commands one by one, whatever their outcome and routing."""
        slow = elapsed >= self._slow_ns
        slot_ops = self.slot_ops
        hot = self.hotkeys
        access = self.access
        # The samplers' countdowns, kept in locals for the loop (as in batch()).
        hot_left, log_left = self._hot_left, self._countdown
        ok: dict[str, int] = {}
        for method, keys, slots, status, reason in served:
            if status == OK:
                ok[method] = ok.get(method, 0) + 1
                emit = slow
                if access is not None and not slow:
                    emit, log_left = countdown(log_left, access.sample)
            else:
                self._failed(method, status, reason, protocol)
                self._observe(method, status, elapsed, 1, protocol)
                emit = True
            if slots is not None:
                for slot in slots:
                    slot_ops[slot] += 1
            if hot is not None and keys:
                sampled, hot_left = countdown(hot_left, hot.sample)
                if sampled:
                    for key in keys:
                        hot.add(key)
            if emit:
                self._emit(method, keys, slots, status, reason, elapsed, shares, peer, protocol)
        self._hot_left, self._countdown = hot_left, log_left
        for method, count in ok.items():
            self._observe(method, OK, elapsed, count, protocol)

    def _log_plain(
        self,
        method: str,
        keys: Sequence[bytes],
        slow: bool,
        elapsed: int,
        shares: tuple[int, int],
        peer: str,
        protocol: str,
    ) -> None:
        """Log successful single-key commands: all when slow, else the access log's sample."""
        logged: Sequence[int] = range(len(keys))
        if not slow:
            assert self.access is not None
            if len(keys) < self._countdown:
                self._countdown -= len(keys)  # none taken: the usual read, with no range built
                return
            logged, self._countdown = sampled_positions(
                self._countdown, self.access.sample, len(keys)
            )
        for i in logged:
            self._emit(method, keys[i : i + 1], None, OK, "", elapsed, shares, peer, protocol)

    def op_counts(self) -> dict[str, int]:
        """Operations by ``<field>.<status>`` (``get.ok``, ``set.invalid_argument``), for Info."""
        out: dict[str, int] = {}
        for (method, status, _protocol), counts in self.latency.items():
            spec = OPS_BY_RPC.get(method)
            name = f"{spec.field if spec is not None else 'unknown'}.{status.lower()}"
            out[name] = out.get(name, 0) + sum(counts)
        return out

    def _observe(
        self, method: str, status: str, elapsed: int, n: int, protocol: str = GRPC
    ) -> None:
        self.ops_total += n
        series = (method, status, protocol)
        counts = self.latency.get(series)
        if counts is None:
            counts = self.latency[series] = new_buckets()
        counts[bucket(elapsed)] += n
        self.latency_sum_ns[series] += elapsed * n

    def _failed(self, method: str, status: str, reason: str, protocol: str = GRPC) -> None:
        self.errors[(method, status, reason, protocol)] += 1
        if reason == Reason.MOVED:
            self.redirected += 1

    def _wanted(self, slow: bool, status: str) -> bool:
        """Failed and slow calls are always logged; one in N of the rest."""
        if slow or status != OK:
            return True
        self._countdown -= 1
        if self._countdown > 0:
            return False
        assert self.access is not None
        self._countdown = self.access.sample
        return True

    def _emit(
        self,
        method: str,
        keys: Sequence[bytes],
        slots: Sequence[int] | None,
        status: str,
        reason: str,
        elapsed: int,
        sizes: tuple[int, int],
        peer: str,
        protocol: str = GRPC,
    ) -> None:
        """Write one call to the slow log (if slow) and the access log (if on).

        An entry names the first key and its slot, and how many keys there were.
        """
        slow = elapsed >= self._slow_ns
        access = self.access
        latency_us = elapsed // 1000
        key = keys[0] if keys else b""
        # Unrouted calls (slots None) compute their first key's slot only here.
        known = slots if slots is not None else [key_slot(key)] if keys else []
        slot = known[0] if known else -1
        if slow:
            self.slowlog.add(
                self._wall_ns() // 1_000_000, latency_us, method, key, len(keys), slot, peer, status
            )
        if access is not None:
            access.put(
                Entry(
                    self._wall_ns(),
                    peer,
                    "",
                    method,
                    key,
                    len(keys),
                    slot,
                    status,
                    reason,
                    latency_us,
                    *sizes,
                    protocol,
                )
            )
