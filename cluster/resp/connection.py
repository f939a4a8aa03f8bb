"""One RESP connection: parse with hiredis, run each command, answer in order.

Commands of one read are run back to back and answered with one write.
A command answered in the same loop step (a key served here, the
connection commands) never leaves this class; a command that must wait
(forwarded, spread over owners, held by a migration's handoff, waiting for
replicas) is carried out by the gRPC service's own
:meth:`~slotcache_server.services.cache.CacheService.carry_out`, and the
commands read after it wait their turn, so replies keep the order of
requests.

Limits: one request (a command and its arguments) may not exceed the
node's message limit, an argument may not exceed the larger of the key and
value limits, and while a command waits at most :data:`INPUT_BUFFER_BYTES`
of further input is read before the socket is paused; a client that does
not read its replies is paused too. A stream that is not RESP ends the
connection with one error line, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import hiredis

from slotcache.contract import OPS, Op, Reason, key_slot, key_slots

from ..executor import CommandError
from ..observability.calls import OK as STATUS_OK
from ..observability.calls import RESP, UNKNOWN_OP, Served
from ..observability.procstats import cpu_seconds, rss_bytes
from ..routing import CallOptions, Decision, Local, Refused, Spread, decide, serves_everything
from ..security.tls_context import certificate_names
from ..services.cache import WRITE_HOLD_MAX_S
from ..tracking.hub import Mode, Subscriber
from . import cluster_info, info
from .codec import OK, PONG, RESP2, RESP3, Codec, Push, Verbatim, bulk, error, integer
from .errors import (
    RespError,
    error_text,
    syntax_error,
    unknown_command,
    unknown_subcommand,
    wrong_arity,
)
from .gate import Identity
from .keys import FAST, PARSERS, Call, Split
from .table import COMMANDS, CommandInfo, command_reply

if TYPE_CHECKING:
    from .listener import RespListener

log = logging.getLogger(__name__)

# Input read ahead while a command waits, before the socket is paused.
INPUT_BUFFER_BYTES = 1 << 20
_perf_ns = time.perf_counter_ns
_KEY_METHODS = {b"get": "Get", b"set": "Set"}
# The spellings of GET and SET that take the short way (others go through the table).
_GET_NAMES = frozenset((b"GET", b"get", b"Get"))
_SET_NAMES = frozenset((b"SET", b"set", b"Set"))
_NAMES = {name.encode(): name for name in COMMANDS}
Answer = bytes | Coroutine[Any, Any, bytes]


class _NoDeadline:
    """The call context of a RESP command: Redis commands carry no deadline or trailers."""

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        pass


NO_DEADLINE = _NoDeadline()


class RespConnection(asyncio.Protocol):
    """The state of one client connection and the commands that act on it."""

    def __init__(self, listener: RespListener, conn_id: int) -> None:
        self.listener = listener
        self.deps = listener.deps
        self.id = conn_id
        self.reader = hiredis.Reader()
        self.codec: Codec = RESP2
        self.name = b""
        self.lib = ("", "")
        self.identity = Identity()
        # A verified client certificate's names (``cn:x``, ``san:y``), on a TLS port.
        self.cert_names: tuple[str, ...] = ()
        self.readonly = False
        self.options = CallOptions(redirect=listener.redirect)
        self.sub: Subscriber | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.created = time.monotonic()
        self._arg_limit = max(
            self.deps.executor.limits.max_key_bytes, self.deps.executor.limits.max_value_bytes
        )
        # A command is being carried out asynchronously; later ones wait.
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] | None = None
        # Replies of this loop step not yet written (see outbox.py).
        self._unsent: list[bytes] = []
        self._closing = False
        self._read_paused = False
        self._write_paused = False
        # The command being run: its counted name and keys.
        self._method = ""
        self._keys: list[bytes] = []

    # ---- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport  # type: ignore[assignment]
        self.peer = peer_name(transport.get_extra_info("peername"))
        self.cert_names = certificate_names(transport.get_extra_info("peercert"))
        self.listener.opened(self)
        try:
            self.identity = self.deps.gate.initial(self.peer, self.cert_names)
        except RespError as exc:
            # Protected mode: say why, as Redis does, and hang up.
            self._closing = True
            transport.write(error(exc.text))  # type: ignore[attr-defined]
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._unsent = []
        if self._task is not None:
            self._task.cancel()
        self._tracking_off()
        self.listener.closed(self)

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its requests.
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_reading()
        if not self._busy:
            self._process()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        if self._busy or self._write_paused:
            if reader.len() > INPUT_BUFFER_BYTES:
                self._pause_reading()
            return
        self._process(len(data))

    # ---- the command loop ---------------------------------------------------------

    def _process(self, size_in: int = 0) -> None:
        """Run every complete command buffered, until one must wait; answer with one write.

        Plain GET and SET take a short way when the routing decision would
        serve every key here anyway (a node that owns every slot, no write
        held, no replicas to wait for, no tracking): that holds for the
        whole read, since nothing changes ownership between two commands
        of one loop step. The short way gathers a run of GETs (or of SETs)
        and serves it with one keyspace call when the run ends, at the
        first other command or at the end of the read, so replies keep the
        order of requests. This loop runs for every command a client sends.
        """
        reader = self.reader
        out: list[bytes] = []
        self._out = out
        served: list[Served] = []
        # Keys of the GETs and SETs answered by the short way, and the values of the
        # SETs: each list's tail from its mark is a run not yet served.
        gets: list[bytes] = []
        sets: list[bytes] = []
        values: list[bytes] = []
        marks = [0, 0]
        started = _perf_ns()
        deps = self.deps
        short = self._short_way()
        # Whether writes may run at once is asked at the first SET of the read, if any.
        writes: bool | None = None
        # A run of SETs is open (else a run of GETs may be).
        in_sets = False
        try:
            for args in iter(reader.gets, False):
                if type(args) is not list:
                    self._serve_runs(out, served, gets, sets, values, marks)
                    self._protocol_error(out, "Protocol error: expected an array of bulk strings")
                    break
                n = len(args)
                if short and n == 2 and args[0] in _GET_NAMES and type(args[1]) is bytes:
                    if in_sets:
                        self._serve_sets(out, served, sets, values, marks)
                        in_sets = False
                    gets.append(args[1])
                    continue
                if short and n == 3 and args[0] in _SET_NAMES:
                    if writes is None:
                        writes = self._writes_here()
                    key, value = args[1], args[2]
                    if writes and type(key) is bytes and type(value) is bytes:
                        if not in_sets:
                            if len(gets) > marks[0]:
                                self._serve_gets(out, served, gets, marks)
                            in_sets = True
                        sets.append(key)
                        values.append(value)
                        continue
                self._serve_runs(out, served, gets, sets, values, marks)
                in_sets = False
                if not n:
                    continue
                answer = self._command(args, out, served)
                if answer is None:
                    if self._closing:
                        break
                    continue
                self._busy = True
                self._task = asyncio.get_running_loop().create_task(
                    self._finish(answer, self._method, self._keys)
                )
                break
            else:
                self._serve_runs(out, served, gets, sets, values, marks)
                # hiredis keeps up to 1 KiB of consumed input in len(): that only
                # matters against a limit of many MiB.
                if reader.len() > deps.max_request_bytes:
                    self._protocol_error(out, "Protocol error: request exceeds the size limit")
        except hiredis.ProtocolError as exc:
            self._serve_runs(out, served, gets, sets, values, marks)
            self._protocol_error(out, f"Protocol error: {exc}")
        self._out = None
        size_out = 0
        if out:
            data = b"".join(out)
            size_out = len(data)
            if not self._unsent:
                self.listener.outbox.queue(self)
            self._unsent.append(data)
        if served or gets or sets:
            self.listener.commands_processed += len(served) + len(gets) + len(sets)
            deps.recorder.commands(RESP, served, started, size_in, size_out, self.peer, gets, sets)
        if self._closing and self.transport is not None:
            self.flush()
            self.transport.close()
        elif not self._busy and self._read_paused and not self._write_paused:
            self._resume_reading()

    def _serve_runs(
        self,
        out: list[bytes],
        served: list[Served],
        gets: list[bytes],
        sets: list[bytes],
        values: list[bytes],
        marks: list[int],
    ) -> None:
        """Serve the run gathered, if any, before a command that does not take the short way."""
        if len(gets) > marks[0]:
            self._serve_gets(out, served, gets, marks)
        elif len(sets) > marks[1]:
            self._serve_sets(out, served, sets, values, marks)

    def _serve_gets(
        self, out: list[bytes], served: list[Served], gets: list[bytes], marks: list[int]
    ) -> None:
        """Answer the run of GETs at the tail of ``gets``; keep only those that succeeded there."""
        mark = marks[0]
        keys = gets[mark:] if mark else gets
        marks[0] = len(gets)
        executor = self.deps.executor
        try:
            # One GET (a client that does not pipeline) costs no list of its own.
            found = executor.get_values(keys) if len(keys) > 1 else [executor.get_value(keys[0])]
        except CommandError:
            # A bad key in the run: answer each on its own, and count the failures apart.
            keys = keys[:]  # the run's own list may be ``gets`` itself
            del gets[mark:]
            for key in keys:
                try:
                    value = executor.get_value(key)
                except CommandError as exc:
                    out.append(error(error_text(exc, self._moved_to)))
                    served.append(("Get", [key], None, exc.code.name, exc.reason))
                    continue
                out.append(self.codec.value(value))
                gets.append(key)
            marks[0] = len(gets)
            return
        self.codec.add_values(out, found)

    def _serve_sets(
        self,
        out: list[bytes],
        served: list[Served],
        sets: list[bytes],
        values: list[bytes],
        marks: list[int],
    ) -> None:
        """Apply the run of SETs at the tail of ``sets``; keep only those that succeeded there."""
        mark = marks[1]
        keys, run_values = (sets[mark:], values[mark:]) if mark else (sets, values)
        marks[1] = len(sets)
        executor = self.deps.executor
        try:
            if len(keys) > 1:
                executor.put_values(keys, run_values)
            else:
                executor.put_value(keys[0], run_values[0])
        except CommandError:
            # A bad key or value, or out of memory: apply each on its own (a plain SET
            # written twice leaves the same value), and count the failures apart.
            keys, run_values = keys[:], run_values[:]  # the run's lists may be the read's
            del sets[mark:], values[mark:]
            for key, value in zip(keys, run_values, strict=True):
                try:
                    executor.set_value(key, value)
                except CommandError as exc:
                    out.append(error(error_text(exc, self._moved_to)))
                    served.append(("Set", [key], None, exc.code.name, exc.reason))
                    continue
                out.append(OK)
                sets.append(key)
                values.append(value)
            marks[1] = len(sets)
            return
        out += [OK] * len(keys)

    def _short_way(self) -> bool:
        """Whether plain GETs and SETs of this read may skip routing and permission checks."""
        deps = self.deps
        gate = deps.gate
        return (
            self.sub is None
            and deps.ownership.serves_all()
            and (not gate.enforcing or gate.unrestricted(self.identity))
        )

    def _writes_here(self) -> bool:
        """Whether writes may run here at once for this read (nothing held, no replicas needed)."""
        deps = self.deps
        return not deps.durability.default_min and not deps.holds.active

    def _command(
        self, args: list[Any], out: list[bytes], served: list[Served]
    ) -> Coroutine[Any, Any, bytes] | None:
        """Run one command other than the short way; return it if it must be awaited."""
        limit = self._arg_limit
        for arg in args:
            if type(arg) is not bytes:
                self._protocol_error(out, "Protocol error: expected an array of bulk strings")
                return None
            if len(arg) > limit:
                out.append(error(f"ERR argument exceeds the {limit} byte limit"))
                served.append((UNKNOWN_OP, [], None, "INVALID_ARGUMENT", ""))
                return None
        self._method, self._keys = UNKNOWN_OP, []
        try:
            answer = self._dispatch(args)
        except RespError as exc:
            out.append(error(exc.text))
            served.append((self._method, self._keys, None, exc.status, ""))
            return None
        except CommandError as exc:
            out.append(error(error_text(exc, self._moved_to)))
            served.append((self._method, self._keys, None, exc.code.name, exc.reason))
            return None
        if type(answer) is bytes:
            out.append(answer)
            served.append((self._method, self._keys, None, STATUS_OK, ""))
            return None
        assert not isinstance(answer, bytes)
        return answer

    async def _finish(self, answer: Awaitable[bytes], method: str, keys: list[bytes]) -> None:
        """Await a command that had to wait, answer it, then run the commands behind it."""
        started = _perf_ns()
        status, reason = STATUS_OK, ""
        try:
            reply = await answer
        except RespError as exc:
            reply, status = error(exc.text), exc.status
        except CommandError as exc:
            reply = error(error_text(exc, self._moved_to))
            status, reason = exc.code.name, exc.reason
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("RESP command %s failed unexpectedly", method)
            reply, status = error(f"ERR internal error: {exc}"), "INTERNAL"
        self._task = None
        self._busy = False
        if self._closing or self.transport is None:
            return
        self._send(reply)
        self.listener.commands_processed += 1
        served: list[Served] = [(method, keys, None, status, reason)]
        self.deps.recorder.commands(RESP, served, started, 0, len(reply), self.peer)
        self._process()

    def _send(self, data: bytes) -> None:
        """Write ``data`` at the end of this loop step, after the replies already waiting."""
        if not self._unsent:
            self.listener.outbox.queue(self)
        self._unsent.append(data)

    def flush(self) -> None:
        """Write the replies waiting, in order (the outbox calls this at the step's end)."""
        unsent = self._unsent
        if not unsent:
            return
        self._unsent = []
        # A transport closed in this step (the node stopping) takes no more writes.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    def _protocol_error(self, out: list[bytes], text: str) -> None:
        """A stream that is not RESP: answer one error, then close (as Redis does)."""
        out.append(error(f"ERR {text}"))
        self._closing = True

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self._closing:
            self._read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Close the connection (the node is stopping), after the replies already computed."""
        self._closing = True
        if self.transport is not None:
            self.flush()
            self.transport.close()

    # ---- dispatch -----------------------------------------------------------------

    def _dispatch(self, args: list[bytes]) -> Answer:
        name = args[0]
        info = COMMANDS.get(_NAMES.get(name) or name.lower().decode("latin-1"))
        if info is None:
            raise unknown_command(args)
        arity = info.arity
        if (arity > 0 and len(args) != arity) or len(args) < -arity:
            raise wrong_arity(info.name)
        lname = info.name.encode()
        parser = PARSERS.get(lname)
        if parser is not None:
            return self._key_command(info, lname, args)
        self._method = info.name.upper()
        if self.deps.gate.enforcing:
            self.deps.gate.check(self.identity, info, None, ())
        handler = _HANDLERS[lname]
        return handler(self, args)

    # ---- key commands -------------------------------------------------------------

    def _key_command(self, info: CommandInfo, name: bytes, args: list[bytes]) -> Answer:
        deps = self.deps
        fast = FAST.get(name)
        if fast is not None:
            key = args[1]
            self._method, self._keys = _KEY_METHODS[name], [key]
            if deps.gate.enforcing:
                deps.gate.check(self.identity, info, _FAST_OPS[name], self._keys)
            if self._serves_now(name == b"set", key):
                reply = fast(deps.executor, args, self.codec)
                if reply is not None:
                    if self.sub is not None and name == b"get":
                        deps.tracking.hub.track(self.sub, key_slot(key), key)
                    return reply
        parsed = PARSERS[name](args)
        if type(parsed) is Split:
            self._method = parsed.calls[0].op.rpc
            self._keys = [k for c in parsed.calls for k in c.keys]
            if deps.gate.enforcing:
                for call in parsed.calls:
                    deps.gate.check(self.identity, info, call.op, call.keys)
            return self._split(parsed)
        assert type(parsed) is Call
        self._method, self._keys = parsed.op.rpc, parsed.keys
        if deps.gate.enforcing:
            deps.gate.check(self.identity, info, parsed.op, parsed.keys)
        result = self._run(parsed)
        if isinstance(result, Coroutine):
            return self._encode_later(parsed, result)
        return parsed.reply(result, self.codec)

    def _serves_now(self, writes: bool, key: bytes) -> bool:
        """Whether a GET or SET of ``key`` runs here in this step, as decided for any call."""
        deps = self.deps
        if writes and deps.durability.default_min:
            return False
        ownership = deps.ownership
        if serves_everything(ownership, writes and deps.holds.active):
            return True
        slot = key_slot(key)
        if writes and deps.holds.held((slot,)):
            return False
        op = _SET_OP if writes else _GET_OP
        return type(decide(op, (slot,), self._options(writes), ownership)) is Local

    def _options(self, writes: bool) -> CallOptions:
        # A tracked read must be served where its key's writes happen: redirect it.
        if self.sub is not None and not writes and not self.options.redirect:
            return replace(self.options, redirect=True)
        return self.options

    def _run(self, call: Call, relay: bool = False) -> Any:
        """Run a call here now if the decision allows it; else a coroutine that carries it out."""
        deps = self.deps
        op, request = call.op, call.request
        handler: Callable[[Any], Any] = deps.executor.handlers[op.field]
        if self.sub is not None and not op.writes:
            handler = self._tracked(handler, call)
        needed = deps.durability.required(op, request) if op.writes else 0
        ownership = deps.ownership
        keys = call.keys
        if serves_everything(ownership, op.writes and deps.holds.active):
            if not needed:
                return handler(request)
            return self._carry_out(call, handler, keys, None, _LOCAL)
        slots = key_slots(keys)
        if op.writes and deps.holds.held(slots):
            return self._carry_out(call, handler, keys, slots, None)
        decision = self._decide(op, slots, relay)
        if type(decision) is Local and not needed:
            return handler(request)
        return self._carry_out(call, handler, keys, slots, decision)

    def _decide(self, op: Op, slots: list[int], relay: bool = False) -> Decision:
        """The routing decision, with one difference for multi-key commands.

        A client that follows redirects gets MOVED for keys that all live on
        one other node, as from Redis; keys that live on several nodes are
        fanned out (where Redis answers CROSSSLOT), unless the read is
        tracked, which must stay where its keys are written. ``relay``: this
        call is one part of a command fanned out that way.
        """
        options = self._options(op.writes)
        if relay:
            options = replace(options, redirect=False)
        decision = decide(op, slots, options, self.deps.ownership)
        if (
            op.multi is not None
            and type(decision) is Refused
            and decision.error.reason == Reason.MOVED
            and self.sub is None
        ):
            spread = decide(op, slots, replace(options, redirect=False), self.deps.ownership)
            if type(spread) is Spread:
                return spread
        return decision

    def _tracked(self, handler: Callable[[Any], Any], call: Call) -> Callable[[Any], Any]:
        """A read handler that registers its keys for invalidation in the step it runs."""
        sub = self.sub
        assert sub is not None
        track = self.deps.tracking.hub.track

        def run(request: Any) -> Any:
            reply = handler(request)
            for key in call.keys:
                track(sub, key_slot(key), key)
            return reply

        return run

    async def _carry_out(
        self,
        call: Call,
        handler: Callable[[Any], Any],
        keys: list[bytes],
        slots: list[int] | None,
        decision: Any,
    ) -> Any:
        """Wait if writes are held, then carry the decision out as the gRPC service does."""
        deps = self.deps
        op = call.op
        if decision is None:
            assert slots is not None
            await deps.holds.wait(slots, WRITE_HOLD_MAX_S)
            decision = self._decide(op, slots)
        # Forwarded calls are made as the connection's user (see Access.forwarding).
        options = replace(self.options, caller=self.identity.caller)
        try:
            return await deps.service.carry_out(
                op, decision, handler, call.request, keys, options, NO_DEADLINE
            )
        except CommandError as exc:
            if exc.reason != Reason.MOVED or self._moved_to(exc.metadata) != _NO_ENDPOINT:
                raise
            # The owner serves no RESP: relay the command instead of redirecting.
            assert slots is not None
            options = replace(options, redirect=False)
            decision = decide(op, slots, options, deps.ownership)
            return await deps.service.carry_out(
                op, decision, handler, call.request, keys, options, NO_DEADLINE
            )

    async def _encode_later(self, call: Call, pending: Awaitable[Any]) -> bytes:
        return call.reply(await pending, self.codec)

    def _split(self, split: Split) -> Answer:
        keys = [key for call in split.calls for key in call.keys]
        relay = self.sub is None and self._spans_nodes(keys)
        results = [self._run(c, relay) for c in split.calls]
        if not any(isinstance(r, Coroutine) for r in results):
            return split.combine(results, self.codec)
        return self._combine_later(split, results)

    async def _combine_later(self, split: Split, results: list[Any]) -> bytes:
        async def settled(result: Any) -> Any:
            return await result if isinstance(result, Coroutine) else result

        replies = await asyncio.gather(*(settled(r) for r in results))
        return split.combine(list(replies), self.codec)

    def _spans_nodes(self, keys: list[bytes]) -> bool:
        """The keys live on more than one node."""
        ownership = self.deps.ownership
        homes = set()
        for slot in key_slots(keys):
            owner = None if ownership.is_local(slot) else ownership.owner(slot)
            homes.add(owner.id if owner is not None else "")
        return len(homes) > 1

    def _moved_to(self, metadata: dict[str, str]) -> str:
        return self.listener.resp_endpoint(metadata.get("node_id", "")) or _NO_ENDPOINT

    # ---- connection commands ------------------------------------------------------

    def ping(self, args: list[bytes]) -> Answer:
        if len(args) > 2:
            raise _arity("ping")
        return PONG if len(args) == 1 else bulk(args[1])

    def echo(self, args: list[bytes]) -> Answer:
        return bulk(args[1])

    def hello(self, args: list[bytes]) -> Answer:
        codec = self.codec
        i = 1
        if len(args) > 1:
            try:
                version = int(args[1])
            except ValueError:
                raise RespError("ERR Protocol version is not an integer or out of range") from None
            if version not in (2, 3):
                raise RespError("NOPROTO unsupported protocol version", "INVALID_ARGUMENT")
            codec = RESP3 if version == 3 else RESP2
            i = 2
        identity, name = self.identity, self.name
        while i < len(args):
            word = args[i].upper()
            if word == b"AUTH" and i + 2 < len(args):
                user = args[i + 1].decode("utf-8", "replace")
                identity = self.deps.gate.authenticate(user, args[i + 2], self.peer)
                i += 3
            elif word == b"SETNAME" and i + 1 < len(args):
                name = _client_name(args[i + 1])
                i += 2
            else:
                raise RespError(f"ERR Syntax error in HELLO option '{args[i].decode()}'")
        self.deps.gate.hello(identity)
        if self.sub is not None and codec is RESP2:
            raise RespError("ERR CLIENT TRACKING needs RESP3 here; turn it off first")
        self.codec, self.identity, self.name = codec, identity, name
        role = "replica" if self.deps.ownership.membership.myself.primary_id else "master"
        return codec.encode(
            {
                "server": "redis",
                "version": info.REDIS_VERSION,
                "proto": codec.version,
                "id": self.id,
                "mode": "cluster" if self.deps.cluster_enabled else "standalone",
                "role": role,
                "modules": [],
            }
        )

    def auth(self, args: list[bytes]) -> Answer:
        if len(args) > 3:
            raise syntax_error()
        user = args[1].decode("utf-8", "replace") if len(args) == 3 else None
        self.identity = self.deps.gate.authenticate(user, args[-1], self.peer)
        return OK

    def select(self, args: list[bytes]) -> Answer:
        if args[1] != b"0":
            raise RespError("ERR DB index is out of range")
        return OK

    def quit(self, args: list[bytes]) -> Answer:
        self._closing = True
        return OK

    def reset(self, args: list[bytes]) -> Answer:
        self._tracking_off()
        self.codec, self.name, self.readonly = RESP2, b"", False
        self.identity = self.deps.gate.initial(self.peer, self.cert_names)
        self.options = CallOptions(redirect=self.listener.redirect)
        return b"+RESET\r\n"

    def readonly_cmd(self, args: list[bytes]) -> Answer:
        self.readonly = True
        self.options = replace(self.options, replica_read=True)
        return OK

    def readwrite(self, args: list[bytes]) -> Answer:
        self.readonly = False
        self.options = replace(self.options, replica_read=False)
        return OK

    def client(self, args: list[bytes]) -> Answer:
        sub = args[1].upper()
        if sub == b"SETNAME" and len(args) == 3:
            self.name = _client_name(args[2])
            return OK
        if sub == b"GETNAME" and len(args) == 2:
            return self.codec.value(self.name or None)
        if sub == b"ID" and len(args) == 2:
            return integer(self.id)
        if sub == b"INFO" and len(args) == 2:
            return self.codec.encode(Verbatim(self.describe() + "\n"))
        if sub == b"LIST":
            self.deps.gate.admin(self.identity, "client|list")
            return self.codec.encode(Verbatim(self.listener.client_list()))
        if sub == b"SETINFO" and len(args) == 4:
            attr = args[2].upper()
            value = args[3].decode("utf-8", "replace")
            if attr == b"LIB-NAME":
                self.lib = (value, self.lib[1])
            elif attr == b"LIB-VER":
                self.lib = (self.lib[0], value)
            else:
                raise RespError(f"ERR Unrecognized option '{args[2].decode()}'")
            return OK
        if sub == b"TRACKING" and len(args) >= 3:
            return self._client_tracking(args[2:])
        if sub == b"TRACKINGINFO" and len(args) == 2:
            flags = ["on"] if self.sub is not None else ["off"]
            if self.sub is not None and self.sub.mode is Mode.BROADCAST:
                flags.append("bcast")
            return self.codec.encode({"flags": flags, "redirect": -1, "prefixes": []})
        if sub in (b"SETNAME", b"GETNAME", b"ID", b"INFO", b"SETINFO", b"TRACKING"):
            raise _arity(f"client|{sub.decode().lower()}")
        raise unknown_subcommand("client", args[1])

    def describe(self) -> str:
        """This connection as CLIENT INFO and CLIENT LIST show it."""
        age = int(time.monotonic() - self.created)
        addr = self.peer.partition(":")[2] or self.peer
        flags = ("r" if self.readonly else "") + ("t" if self.sub is not None else "") or "N"
        return (
            f"id={self.id} addr={addr} laddr=:{self.listener.port} name={self.name.decode()} "
            f"age={age} db=0 flags={flags} resp={self.codec.version} "
            f"user={self.identity.user} lib-name={self.lib[0]} lib-ver={self.lib[1]}"
        )

    # ---- tracking -----------------------------------------------------------------

    @property
    def tracking_on(self) -> bool:
        """CLIENT TRACKING is on."""
        return self.sub is not None

    def _client_tracking(self, args: list[bytes]) -> Answer:
        switch = args[0].upper()
        if switch == b"OFF" and len(args) == 1:
            self._tracking_off()
            return OK
        if switch != b"ON":
            raise syntax_error()
        mode = Mode.KEYS
        for word in (a.upper() for a in args[1:]):
            if word == b"BCAST":
                mode = Mode.BROADCAST
            else:
                raise RespError(
                    f"ERR CLIENT TRACKING option '{word.decode()}' is not supported by slotcache"
                )
        if self.codec is not RESP3:
            raise RespError(
                "ERR CLIENT TRACKING needs RESP3 here (HELLO 3): REDIRECT is not supported"
            )
        self.deps.gate.subscribe(self.identity, mode is Mode.BROADCAST)
        self._tracking_off()
        self.sub = self.deps.tracking.hub.subscribe(mode, None, self._invalidated)
        return OK

    def _tracking_off(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None:
            self.deps.tracking.hub.unsubscribe(sub)
            self.deps.tracking.release_later()

    def _invalidated(self) -> None:
        """The hub queued invalidations for this connection: push them now.

        Called in the step of the write that caused them, so the push leaves
        before that write is acknowledged to its own client. Replies this
        connection already computed but has not written go first.
        """
        sub = self.sub
        transport = self.transport
        if sub is None or transport is None or self._closing:
            return
        hub = self.deps.tracking.hub
        pushes: list[bytes] = []
        while True:
            batch = hub.next_batch(sub)
            if batch is None:
                break
            if batch.flush or batch.slots:
                self.deps.tracking.release_later()
                pushes.append(RESP3.encode(Push(["invalidate", None])))
            if batch.keys:
                pushes.append(RESP3.encode(Push(["invalidate", list(batch.keys)])))
        if not pushes:
            return
        if self._out is not None:
            self._out.extend(pushes)
        else:
            # Now, not at the step's end: the write that caused them is acknowledged
            # to its own client in this step, and must not overtake them.
            self._unsent.extend(pushes)
            self.flush()

    # ---- server commands ----------------------------------------------------------

    def info_cmd(self, args: list[bytes]) -> Answer:
        deps, listener = self.deps, self.listener
        inputs = info.InfoInputs(
            server=deps.server_info(),
            stats=deps.stats(),
            resp_port=listener.port,
            connected_clients=len(listener.connections),
            connections_received=listener.connections_received,
            commands_processed=listener.commands_processed,
            tracking_clients=listener.tracking_clients(),
            rss_bytes=rss_bytes(),
            cpu=cpu_seconds(),
            primary_endpoint=listener.primary_endpoint(),
        )
        wanted = [a.decode("utf-8", "replace") for a in args[1:]]
        text = info.render(info.sections(inputs), wanted)
        return self.codec.encode(Verbatim(text))

    def dbsize(self, args: list[bytes]) -> Answer:
        return integer(self.deps.executor.keyspace.key_count)

    def command(self, args: list[bytes]) -> Answer:
        if len(args) > 1 and args[1].upper() == b"GETKEYS":
            return self._getkeys(args[2:])
        value = command_reply(args)
        if value is None:
            raise unknown_subcommand("command", args[1])
        return self.codec.encode(value)

    def _getkeys(self, args: list[bytes]) -> Answer:
        if not args:
            raise _arity("command|getkeys")
        target = COMMANDS.get(args[0].decode("utf-8", "replace").lower())
        if target is None:
            raise RespError("ERR Invalid command specified")
        if not target.first_key:
            raise RespError("ERR The command has no key arguments")
        last = target.last_key if target.last_key >= 0 else len(args) + target.last_key
        return self.codec.encode(list(args[target.first_key : last + 1 : target.step]))

    def cluster(self, args: list[bytes]) -> Answer:
        sub = args[1].upper()
        listener = self.listener
        codec = self.codec
        if sub == b"KEYSLOT" and len(args) == 3:
            return integer(key_slot(args[2]))
        if sub == b"MYID" and len(args) == 2:
            return bulk(self.deps.ownership.membership.myself.hex_id.encode())
        if sub == b"COUNTKEYSINSLOT" and len(args) == 3:
            slot = cluster_info.parse_slot(args[2])
            if slot is None:
                raise RespError("ERR Invalid slot")
            return integer(self.deps.executor.keyspace.slot_key_count(slot))
        view = listener.cluster_view()
        if not self.deps.cluster_enabled:
            view = replace(view, enabled=False)
        if sub == b"SLOTS" and len(args) == 2:
            return codec.encode(cluster_info.slots_reply(view))
        if sub == b"SHARDS" and len(args) == 2:
            return codec.encode(cluster_info.shards_reply(view))
        if sub == b"NODES" and len(args) == 2:
            return codec.encode(Verbatim(cluster_info.nodes_reply(view)))
        if sub == b"INFO" and len(args) == 2:
            return codec.encode(Verbatim(cluster_info.info_reply(view)))
        if sub in (b"SLOTS", b"SHARDS", b"NODES", b"INFO", b"KEYSLOT", b"MYID"):
            raise _arity(f"cluster|{sub.decode().lower()}")
        raise unknown_subcommand("cluster", args[1])


_NO_ENDPOINT = "?"


def _HELD(key: bytes, value: bytes) -> None:
    """Stands for "writes may not run at once in this read": SETs take the general way."""


_GET_OP, _SET_OP = OPS["get"], OPS["set"]
_FAST_OPS = {b"get": _GET_OP, b"set": _SET_OP}
_LOCAL = Local()


def peer_name(address: Any) -> str:
    """A socket's peer as the gRPC side spells it (``ipv4:h:p``, ``ipv6:[h]:p``), for the logs."""
    if not address:
        return "unknown"
    host, port = address[0], address[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _arity(name: str) -> RespError:
    return wrong_arity(name)


def _client_name(name: bytes) -> bytes:
    if any(c <= 32 or c >= 127 for c in name):
        raise RespError("ERR Client names cannot contain spaces, newlines or special characters.")
    return name


_HANDLERS: dict[bytes, Callable[[RespConnection, list[bytes]], Answer]] = {
    b"ping": RespConnection.ping,
    b"echo": RespConnection.echo,
    b"hello": RespConnection.hello,
    b"auth": RespConnection.auth,
    b"select": RespConnection.select,
    b"quit": RespConnection.quit,
    b"reset": RespConnection.reset,
    b"client": RespConnection.client,
    b"info": RespConnection.info_cmd,
    b"dbsize": RespConnection.dbsize,
    b"command": RespConnection.command,
    b"cluster": RespConnection.cluster,
    b"readonly": RespConnection.readonly_cmd,
    b"readwrite": RespConnection.readwrite,
}
