"""The sans-I/O client core shared by :class:`Client` and :class:`AsyncClient`.

A command runs as a *plan*: a generator that yields lists of actions and
receives one outcome per action, then returns the result. The actions are

- :class:`Call`: one operation for one node, sent on that node's Pipeline
  stream (``stream=True``, batched with whatever else is queued) or as a
  unary RPC; its outcome is the reply (a :class:`Trailed` reply for a
  replica read) or the :class:`SlotcacheError` it failed with;
- :class:`Sleep`: wait (backoff before a retry); outcome None;
- :class:`Refresh`: bring the slot map up to date before going on, joining a
  refresh already under way; outcome None or the error it failed with.

Actions in one list are independent: the asyncio client runs them
concurrently, the blocking client one after the other. The clients only
perform actions. Everything else — deadlines, routing by slot, choosing the
stream or a unary call, replica reads, splitting and merging multi-key
calls, following MOVED, retrying UNAVAILABLE, counting metrics, and deciding
when the map needs a refresh — lives here once. After every step a client
asks :meth:`ClientCore.take_refresh_request` whether to start a background
refresh, and runs :meth:`ClientCore.refresh_plan` for it the same way.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias, TypeVar

from slotcache._address import check_port
from slotcache._commands import Command
from slotcache._nearcache import NOT_CACHED, NearCache, NearCacheSeam, Ticket
from slotcache._pipeline import MAX_STREAMED_BYTES
from slotcache._retry import RetryPolicy, could_not_connect, never_sent, retryable
from slotcache._routing import (
    Redirect,
    check_before_split,
    group_by_owner,
    parse_moved,
)
from slotcache._slotmap import SlotMap
from slotcache._stats import ClientStats
from slotcache.contract import (
    LAG_MS_KEY,
    LAG_OPS_KEY,
    OPS_BY_RPC,
    REDIRECT_KEY,
    REPLICA_READ_KEY,
    TRACK_KEY,
    Reason,
    ShortReply,
    key_slot,
    key_slots,
)
from slotcache.errors import Moved, SlotcacheError, Timeout, Unavailable, with_connect_hint
from slotcache.v1 import cache_pb2

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_TIMEOUT_S",
    "REDIRECT_METADATA",
    "REPLICA_METADATA",
    "Action",
    "Call",
    "ClientCore",
    "Outcome",
    "Plan",
    "Refresh",
    "Routing",
    "Sleep",
    "Trailed",
    "call_metadata",
    "check_timeout",
]

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:7000"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_REDIRECTS = 5
# Request metadata that makes a node answer MOVED instead of forwarding.
REDIRECT_METADATA = ((REDIRECT_KEY, "1"),)
# Request metadata that lets a replica of the owner serve a read.
REPLICA_METADATA = ((REPLICA_READ_KEY, "1"),)
# Tracked attempts of one read refused NO_SUBSCRIPTION before it goes untracked.
MAX_UNTRACKED_RETRIES = 2
# One Topology call may take this long; a node that is stopped must not hold
# a refresh for the caller's whole deadline.
TOPOLOGY_TIMEOUT_S = 2.0
# A background refresh (no caller waiting on it) gives up after this long.
REFRESH_BUDGET_S = 10.0
# Nodes asked for Topology at once; the reply with the highest epoch wins.
REFRESH_FANOUT = 3
# Refreshes start at most this often; a burst of MOVED replies after a
# reshard then costs one Topology round, not one per reply.
MIN_REFRESH_INTERVAL_S = 0.1
# A retry is not worth starting with less time than this left.
MIN_ATTEMPT_S = 0.005

Routing = Literal["smart", "proxy"]


@dataclass(frozen=True, slots=True)
class Call:
    """One operation to perform at ``address``.

    ``redirect`` asks the node for MOVED rather than forwarding. ``stream``
    sends it on the node's Pipeline stream; otherwise it is a unary RPC.
    ``replica`` adds the replica-read metadata (always unary, since replicas
    serve reads on unary calls only) and asks for the trailing metadata: the
    outcome is then a :class:`Trailed`. ``track`` is a near-cache
    subscription id, sent as ``slotcache-track`` (on a stream: a stream of
    its own, opened with that metadata).
    """

    address: str
    rpc: str
    request: Any
    timeout: float | None
    redirect: bool = False
    stream: bool = False
    replica: bool = False
    track: str | None = None


@dataclass(frozen=True, slots=True)
class Trailed:
    """A unary reply with the call's trailing metadata (replica reads report their lag there)."""

    reply: Any
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next step."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Refresh:
    """Bring the slot map up to date (``initial``: load it if there is none) within ``timeout``."""

    initial: bool
    timeout: float | None


Action: TypeAlias = Call | Sleep | Refresh
Outcome = Any  # a reply message, None, or the SlotcacheError an action failed with
Plan = Generator[list[Action], list[Outcome], T]


def call_metadata(
    redirect: bool,
    replica: bool,
    track: str | None,
    credentials: tuple[tuple[str, str], ...] = (),
) -> tuple[tuple[str, str], ...] | None:
    """The request metadata of a call (or of the stream it travels on); None for none."""
    metadata: tuple[tuple[str, str], ...] = REDIRECT_METADATA if redirect else ()
    if replica:
        metadata = (*metadata, *REPLICA_METADATA)
    if track is not None:
        metadata = (*metadata, (TRACK_KEY, track))
    return (*metadata, *credentials) or None


def check_timeout(timeout: float | None) -> float | None:
    """Refuse zero or negative timeouts, which gRPC would treat as "already expired"."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds (got {timeout})")
    return timeout


def parse_addresses(addresses: str | Sequence[str]) -> list[str]:
    """Seed addresses from ``"host:port"``, ``"h1:p1,h2:p2"`` or a list of either; order kept."""
    if isinstance(addresses, str):
        items = [addresses]
    elif isinstance(addresses, Sequence) and all(isinstance(a, str) for a in addresses):
        items = list(addresses)
    else:
        raise TypeError("addresses must be a str or a sequence of str")
    seeds: dict[str, None] = {}
    for item in items:
        for part in item.split(","):
            if part.strip():
                seeds.setdefault(check_port(part.strip()), None)
    if not seeds:
        raise ValueError("at least one address is needed")
    return list(seeds)


class ClientCore:
    """Decides where each call goes, what to do with what comes back, and when to refresh.

    ``routing="smart"`` loads the slot map from Topology and sends each key
    to its owner, asking for redirects; ``routing="proxy"`` sends every call
    to one node (the first seed) and lets it forward. ``clock`` and ``random``
    are injectable so the decisions can be tested without waiting.
    """

    def __init__(
        self,
        addresses: str | Sequence[str] = DEFAULT_ADDRESS,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        routing: Routing = "smart",
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        retry: RetryPolicy | None = None,
        pipelining: bool = True,
        clock: Callable[[], float] = time.monotonic,
        random: _random.Random | None = None,
    ) -> None:
        if routing not in ("smart", "proxy"):
            raise ValueError(f"routing must be 'smart' or 'proxy', not {routing!r}")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self.seeds = parse_addresses(addresses)
        self.timeout = check_timeout(timeout)
        self.routing: Routing = routing
        self.smart = routing == "smart"
        self.max_redirects = max_redirects
        self.retry = retry if retry is not None else RetryPolicy()
        #: Send operations on per-node Pipeline streams (False: every call is unary).
        self.pipelining = pipelining
        self.stats = ClientStats()
        self.slot_map: SlotMap | None = None
        #: The near cache the read path consults and fills (see :mod:`slotcache._nearcache`).
        self.near_cache: NearCacheSeam | None = None
        self._clock = clock
        self._random = random or _random.Random()
        self._proxy = 0  # index of the seed proxy mode sends to
        self._reached = False  # some node has answered this client
        self._refresh_wanted = False
        self._last_refresh = float("-inf")

    # ---- what callers can inspect ------------------------------------------------

    def owner_of(self, key: bytes) -> str | None:
        """The address a call for ``key`` goes to now (None before the map is loaded)."""
        if not self.smart:
            return self.seeds[self._proxy]
        if self.slot_map is None:
            return None
        return self.slot_map.owner(key_slot(key)) or self._fallback()

    # ---- commands ----------------------------------------------------------------

    def plan(self, command: Command[T], timeout: float | None = None) -> Plan[T]:
        """Run ``command`` wherever its keys live; return its parsed result or raise.

        The call is counted in ``stats``: once in ``operations`` and its
        latency histogram, and in ``faults`` if it raises.
        """
        clock = self._clock
        started = clock()
        op = OPS_BY_RPC[command.rpc].field  # metric names are the Pipeline fields
        stats = self.stats
        try:
            result = yield from self._run(command, timeout, started)
        except SlotcacheError as exc:
            stats.fault(op, exc)
            stats.record(op, clock() - started)
            if not self._reached and could_not_connect(exc):
                # Nothing ever answered this client: most likely no server, or a wrong address.
                raise with_connect_hint(exc, self.seeds) from None
            raise
        stats.record(op, clock() - started)
        return result

    def _run(self, command: Command[T], timeout: float | None, started: float) -> Plan[T]:
        budget = self.timeout if timeout is None else check_timeout(timeout)
        deadline = None if budget is None else started + budget
        rpc = command.rpc
        request = command.request
        spec = OPS_BY_RPC[rpc]
        multi = spec.multi
        keys = command.keys
        if keys is None:
            keys = spec.keys(request)
        if multi is not None and not keys:
            return command.parse(multi.new_reply(0))
        near = self.near_cache
        tracking: NearCacheSeam | None = None
        if near is not None:
            if rpc == "Get":
                hit = near.lookup(keys[0])
                if hit is not None:
                    self.stats.near_cache_hits += 1
                    return command.parse(hit)
                self.stats.near_cache_misses += 1
                # Replica reads are not tracked: the subscription is the owner's.
                tracking = None if command.replica else near
            elif spec.writes:
                # Dropped before and after: a read racing the write cannot leave the
                # old value behind for this client's next read.
                near.invalidate(keys)
                try:
                    return (yield from self._send(command, keys, budget, deadline, None))
                finally:
                    near.invalidate(keys)
        return (yield from self._send(command, keys, budget, deadline, tracking))

    def _send(
        self,
        command: Command[T],
        keys: list[bytes],
        budget: float | None,
        deadline: float | None,
        tracking: NearCacheSeam | None,
    ) -> Plan[T]:
        """Send ``command`` until it succeeds, fails for good, or runs out of time.

        With ``tracking`` (a single-key Get and a near cache), each attempt
        puts a placeholder in the near cache, sends the read tracked under
        the node's subscription with a Ttl beside it (same message: the
        entry must not outlive the key), and fills the near cache from both.
        """
        rpc = command.rpc
        request = command.request
        multi = OPS_BY_RPC[rpc].multi
        if self.smart and self.slot_map is None:
            (error,) = yield [Refresh(True, budget)]
            if error is not None:
                raise error
            if self.slot_map is None:
                raise Timeout("timed out waiting for the slot map")
        slots: list[int] = []  # filled when routing needs them
        stream = self.pipelining and not command.unary and request.ByteSize() <= MAX_STREAMED_BYTES
        pending = list(range(len(keys)))
        merged: Any = None
        redirects = retries = attempt = refused = 0
        while True:
            groups = self._route(keys, slots, pending)
            if multi is not None and len(groups) > 1 and merged is None:
                check_before_split(rpc, request)
            calls = [
                self._call(command, address, indices, len(keys), deadline, stream, attempt)
                for address, indices in groups.items()
            ]
            if tracking is not None and (ticket := tracking.track(keys[0], calls[0].address)):
                calls[0] = replace(calls[0], track=ticket.track)
                outcomes = yield [calls[0], self._ttl_call(calls[0], keys[0])]
                outcomes = [self._near_fill(tracking, ticket, outcomes, calls[0].address)]
            else:
                outcomes = yield [*calls]
            attempt += 1

            pending = []
            moved: SlotcacheError | None = None
            unavailable: SlotcacheError | None = None
            failure: SlotcacheError | None = None
            for call, indices, outcome in zip(calls, groups.values(), outcomes, strict=True):
                if not isinstance(outcome, SlotcacheError):
                    self._reached = True
                    if type(outcome) is Trailed:
                        outcome = self._replica_answered(outcome)
                    if len(indices) == len(keys):
                        return command.parse(outcome)
                    assert multi is not None
                    if merged is None:
                        merged = multi.new_reply(len(keys))
                    try:
                        multi.merge(merged, indices, outcome)
                    except ShortReply as exc:
                        raise SlotcacheError(str(exc)) from None
                    continue
                if call.track is not None and (
                    outcome.reason == Reason.NO_SUBSCRIPTION
                    or (not self.smart and type(outcome) is Moved)
                ):
                    # The subscription is gone (the node restarted, the stream ended),
                    # or a proxy cannot serve a tracked read of a key it does not own:
                    # send the read again now, tracked under a new id or not at all.
                    refused += 1
                    if refused > MAX_UNTRACKED_RETRIES or not self.smart:
                        tracking = None
                    pending.extend(indices)
                    continue
                redirect = parse_moved(outcome) if self.smart else None
                if (
                    redirect is not None
                    and call.replica
                    and redirect.address == self._owner(redirect.slot)
                ):
                    # A replica that cannot serve yet (still syncing) points at the
                    # primary we already know: not a stale map, just read from the primary.
                    pending.extend(indices)
                elif redirect is not None:
                    self._follow(redirect)
                    moved = outcome
                    pending.extend(indices)
                elif retryable(outcome, command.idempotent):
                    unavailable = outcome
                    pending.extend(indices)
                elif failure is None:
                    failure = outcome
            if failure is not None:
                raise failure
            if not pending:
                return command.parse(merged)
            pending.sort()

            if moved is not None:
                redirects += 1
                if redirects > self.max_redirects:
                    raise moved
                self._refresh_wanted = True
                if redirects > 1:
                    # Redirected again: the map is behind by more than one slot
                    # (or views disagree). Wait for the refresh the first MOVED
                    # started rather than learning one slot per round trip.
                    yield [Refresh(False, self._remaining(deadline))]
            if unavailable is not None:
                retries += 1
                yield from self._backoff(unavailable, retries, deadline)

    def _call(
        self,
        command: Command[Any],
        address: str,
        indices: list[int],
        key_count: int,
        deadline: float | None,
        stream: bool,
        attempt: int,
    ) -> Call:
        """The call that sends the keys at ``indices`` of ``command`` to ``address``."""
        request = command.request
        if len(indices) != key_count:
            multi = OPS_BY_RPC[command.rpc].multi
            assert multi is not None  # only multi-key commands are split
            request = multi.subset(request, indices)
        timeout = self._remaining(deadline)
        if command.replica:
            # A replica on the first attempt; the owner after a refusal or a failure.
            target = self._replica_of(address) if attempt == 0 else address
            if target != address or not self.smart:
                # Replicas serve reads on unary calls only.
                self.stats.unary_calls += 1
                return Call(target, command.rpc, request, timeout, self.smart, False, True)
        if not stream:
            self.stats.unary_calls += 1
        return Call(address, command.rpc, request, timeout, self.smart, stream)

    def _owner(self, slot: int) -> str | None:
        return self.slot_map.owner(slot) if self.slot_map is not None else None

    def _replica_of(self, primary: str) -> str:
        """A replica of ``primary`` to read from (random, to spread the load), or the primary."""
        if not self.smart or self.slot_map is None:
            return primary
        replicas = self.slot_map.replicas_of(primary)
        if not replicas:
            return primary
        return replicas[self._random.randrange(len(replicas))]

    def _replica_answered(self, outcome: Trailed) -> Any:
        """Note the lag a replica reported (a primary reports none) and unwrap its reply."""
        metadata = outcome.metadata
        lag_ms = metadata.get(LAG_MS_KEY)
        if lag_ms is not None:
            stats = self.stats
            stats.replica_reads += 1
            try:
                stats.replica_lag_ms = int(lag_ms)
                stats.replica_lag_ops = int(metadata.get(LAG_OPS_KEY, "0"))
            except ValueError:
                pass
        return outcome.reply

    def near_hit(self, near: NearCache, key: bytes) -> Any:
        """The bytes ``near`` holds for ``key`` (None: known missing), or NOT_CACHED.

        The blocking and asyncio ``get`` call this before building any
        command, so a hit costs a dict lookup and the bookkeeping below. A
        hit counts as a ``get`` like any other (operations, latency); a miss
        is counted by the read path it falls through to.
        """
        clock = self._clock
        started = clock()
        value = near.cached(key)
        if value is not NOT_CACHED:
            stats = self.stats
            stats.near_cache_hits += 1
            stats.record("get", clock() - started)
        return value

    def _ttl_call(self, get: Call, key: bytes) -> Call:
        """The Ttl sent beside a tracked Get, the same way (same stream, same message)."""
        if not get.stream:
            self.stats.unary_calls += 1
        request = cache_pb2.TtlRequest(key=key)
        return Call(
            get.address, "Ttl", request, get.timeout, get.redirect, get.stream, False, get.track
        )

    @staticmethod
    def _near_fill(
        near: NearCacheSeam, ticket: Ticket, outcomes: list[Outcome], address: str
    ) -> Outcome:
        """Fill the near cache from a tracked Get and its Ttl; the Get's outcome."""
        reply, ttl = outcomes
        if isinstance(reply, SlotcacheError) or isinstance(ttl, SlotcacheError):
            near.release(ticket)
            if any(getattr(o, "reason", "") == Reason.NO_SUBSCRIPTION for o in (reply, ttl)):
                near.forget(address, ticket.track)
            return reply  # a Get that worked is still the answer, just not cached
        near.fill(ticket, reply, ttl)
        return reply

    def _route(
        self, keys: list[bytes], slots: list[int], pending: list[int]
    ) -> dict[str, list[int]]:
        """Pending key indices grouped by the address to send them to.

        ``slots`` caches the keys' slots; it is filled on first need (a map
        with one owner for every slot routes without hashing anything).
        """
        if not self.smart:
            return {self.seeds[self._proxy]: pending}
        slot_map = self.slot_map
        assert slot_map is not None
        sole = slot_map.sole_owner
        if sole is not None:
            return {sole: pending}
        if not slots:
            slots.extend(key_slots(keys))
        if len(pending) == 1:  # every single-key command: skip the grouping machinery
            return {slot_map.owner(slots[pending[0]]) or self._fallback(): pending}
        owners = slot_map.owners_of([slots[i] for i in pending])
        first = owners[0]
        if first is not None and owners.count(first) == len(owners):
            return {first: pending}  # one node serves every key: no grouping
        fallback = self._fallback()
        return group_by_owner(range(len(pending)), lambda j: owners[j] or fallback, pending)

    def _fallback(self) -> str:
        """Where to send a key whose slot has no known owner: any node that may know better.

        It answers MOVED if it knows the owner, or CLUSTERDOWN (retried) if
        nobody serves the slot.
        """
        if self.slot_map is not None:
            for node in self.slot_map.nodes:
                if node.primary and not node.failing:
                    return node.address
        return self.seeds[0]

    def _follow(self, redirect: Redirect) -> None:
        """Patch the map at once, so this and every later call for the slot goes straight there."""
        self.stats.redirects += 1
        if self.slot_map is not None:
            self.slot_map.apply_moved(redirect.slot, redirect.address, redirect.epoch)

    def _backoff(
        self, error: SlotcacheError, retries: int, deadline: float | None
    ) -> Generator[list[Action], list[Outcome], None]:
        """Wait before retry number ``retries``, refreshing the map meanwhile; or raise ``error``.

        Until some node has answered this client, only a connection that was
        never made is retried, and only by trying the next seed at once: a
        wrong address should fail fast, not cost the whole deadline.
        """
        if not self._reached:
            if self.smart or retries >= len(self.seeds) or not never_sent(error):
                raise error
            self._next_proxy()
            self.stats.retries += 1
            return
        if retries > self.retry.max_retries:
            raise error
        delay = self.retry.delay(retries, self._random.random)
        remaining = None if deadline is None else deadline - self._clock()
        if remaining is not None and remaining < delay + MIN_ATTEMPT_S:
            raise error
        self.stats.retries += 1
        actions: list[Action] = [Sleep(delay)]
        if self.smart:
            if self._refresh_due():
                # Leave the retry its time: the refresh gets what the sleep does not need.
                budget = None if remaining is None else remaining - delay
                actions.insert(0, Refresh(False, budget))
        else:
            self._next_proxy()
        yield actions

    def _next_proxy(self) -> None:
        self._proxy = (self._proxy + 1) % len(self.seeds)

    def _remaining(self, deadline: float | None) -> float | None:
        """Time left for the next call; Timeout once the deadline has passed."""
        if deadline is None:
            return None
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise Timeout("the deadline passed before the call could be sent again")
        return remaining

    # ---- the slot map ------------------------------------------------------------

    def take_refresh_request(self) -> float | None:
        """Whether to start a background refresh: None for no, else the seconds to wait first.

        True once per request. Refreshes start at most every
        ``MIN_REFRESH_INTERVAL_S``; a request made sooner is not dropped but
        delayed, so a MOVED right after a refresh still gets the map refreshed.
        """
        if not self._refresh_wanted:
            return None
        self._refresh_wanted = False
        return max(0.0, self._last_refresh + MIN_REFRESH_INTERVAL_S - self._clock())

    def _refresh_due(self) -> bool:
        return self._clock() - self._last_refresh >= MIN_REFRESH_INTERVAL_S

    def refresh_plan(self, initial: bool, timeout: float | None) -> Plan[None]:
        """Ask nodes for Topology and install the best answer; raise if none answers.

        ``initial`` loads the first map from the seeds, in the order given, and
        does nothing if another caller has loaded it meanwhile. A later
        refresh asks known nodes (healthy ones first, in random order, then
        the seeds), a few at a time, and keeps the reply with the highest
        epoch. A refresh started moments after another is skipped.
        """
        if initial and self.slot_map is not None:
            return
        if not initial and not self._refresh_due():
            return
        now = self._clock()
        self._last_refresh = now
        self._refresh_wanted = False
        deadline = now + (REFRESH_BUDGET_S if timeout is None else timeout)
        candidates = self._refresh_candidates()
        last_error: SlotcacheError | None = None
        for start in range(0, len(candidates), REFRESH_FANOUT):
            remaining = deadline - self._clock()
            if remaining <= 0:
                last_error = last_error or Timeout("no node answered Topology in time")
                break
            batch = candidates[start : start + REFRESH_FANOUT]
            request = cache_pb2.TopologyRequest()
            per_call = min(remaining, TOPOLOGY_TIMEOUT_S)
            self.stats.unary_calls += len(batch)
            outcomes = yield [Call(a, "Topology", request, per_call) for a in batch]
            answers = []
            for address, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, SlotcacheError):
                    last_error = outcome
                else:
                    answers.append((address, outcome))
            if answers:
                self._reached = True
                address, reply = max(answers, key=lambda a: (a[1].epoch, a[1].cluster_ok))
                self._install(SlotMap.from_topology(reply, address))
                return
        self.stats.refresh_failures += 1
        raise last_error or Unavailable("no node to ask for the slot map")

    def _refresh_candidates(self) -> list[str]:
        if self.slot_map is None:
            return list(self.seeds)
        healthy = [n.address for n in self.slot_map.nodes if not n.failing]
        failing = [n.address for n in self.slot_map.nodes if n.failing]
        self._random.shuffle(healthy)
        ordered: dict[str, None] = dict.fromkeys([*healthy, *failing, *self.seeds])
        return list(ordered)

    def _install(self, new: SlotMap) -> None:
        """Use ``new`` unless it is older than what the client already knows."""
        current = self.slot_map
        if current is not None and new.epoch < current.epoch:
            return
        self.slot_map = new
        self.stats.refreshes += 1
