"""The sans-I/O client core shared by :class:`Client` and :class:`AsyncClient`.

A command runs as a *plan*: a generator that yields lists of actions and
receives one outcome per action, then returns the result. The actions are

- :class:`Call`: one unary RPC to one node; its outcome is the reply or the
  :class:`SlotcacheError` it failed with;
- :class:`Sleep`: wait (backoff before a retry); outcome None;
- :class:`Refresh`: bring the slot map up to date before going on, joining a
  refresh already under way; outcome None or the error it failed with.

Actions in one list are independent: the asyncio client runs them
concurrently, the blocking client one after the other. The clients only
perform actions. Everything else — deadlines, routing by slot, splitting and
merging multi-key calls, following MOVED, retrying UNAVAILABLE, and deciding
when the map needs a refresh — lives here once. After every step a client
asks :meth:`ClientCore.take_refresh_request` whether to start a background
refresh, and runs :meth:`ClientCore.refresh_plan` for it the same way.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

from slotcache._commands import Command
from slotcache._retry import RetryPolicy, never_sent, retryable
from slotcache._routing import (
    MULTI_KEY,
    Redirect,
    check_before_split,
    group_by_owner,
    parse_moved,
)
from slotcache._slotmap import SlotMap
from slotcache._slots import key_slot
from slotcache._stats import ClientStats
from slotcache.errors import SlotcacheError, Timeout, Unavailable
from slotcache.v1 import cache_pb2

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_TIMEOUT_S",
    "REDIRECT_METADATA",
    "Action",
    "Call",
    "ClientCore",
    "Outcome",
    "Plan",
    "Refresh",
    "Routing",
    "Sleep",
    "check_timeout",
]

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:7000"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_REDIRECTS = 5
# Request metadata that makes a node answer MOVED instead of forwarding.
REDIRECT_METADATA = (("slotcache-redirect", "1"),)
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
    """One unary call to perform at ``address``; ``redirect`` asks the node for MOVED."""

    address: str
    rpc: str
    request: Any
    timeout: float | None
    redirect: bool = False


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
                seeds.setdefault(part.strip(), None)
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
        self.stats = ClientStats()
        self.slot_map: SlotMap | None = None
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
        """Run ``command`` wherever its keys live; return its parsed result or raise."""
        budget = self.timeout if timeout is None else check_timeout(timeout)
        deadline = None if budget is None else self._clock() + budget
        multi = MULTI_KEY.get(command.rpc)
        keys = multi.keys(command.request) if multi is not None else [command.request.key]
        if multi is not None and not keys:
            return command.parse(multi.new_reply(0))
        if self.smart and self.slot_map is None:
            (error,) = yield [Refresh(True, budget)]
            if error is not None:
                raise error
            if self.slot_map is None:
                raise Timeout("timed out waiting for the slot map")
        slots = [key_slot(k) for k in keys] if self.smart else []
        pending = list(range(len(keys)))
        merged: Any = None
        redirects = retries = 0
        while True:
            groups = self._route(slots, pending)
            if multi is not None and len(groups) > 1 and merged is None:
                check_before_split(command.rpc, command.request)
            calls: list[Action] = []
            for address, indices in groups.items():
                request = command.request
                if len(indices) != len(keys):
                    assert multi is not None
                    request = multi.subset(request, indices)
                timeout_now = self._remaining(deadline)
                calls.append(Call(address, command.rpc, request, timeout_now, self.smart))
            outcomes = yield calls

            pending = []
            moved: SlotcacheError | None = None
            unavailable: SlotcacheError | None = None
            failure: SlotcacheError | None = None
            for indices, outcome in zip(groups.values(), outcomes, strict=True):
                if not isinstance(outcome, SlotcacheError):
                    self._reached = True
                    if len(indices) == len(keys):
                        return command.parse(outcome)
                    assert multi is not None
                    if merged is None:
                        merged = multi.new_reply(len(keys))
                    multi.merge(merged, indices, outcome)
                    continue
                redirect = parse_moved(outcome) if self.smart else None
                if redirect is not None:
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

    def _route(self, slots: list[int], pending: list[int]) -> dict[str, list[int]]:
        """Pending key indices grouped by the address to send them to."""
        if not self.smart:
            return {self.seeds[self._proxy]: pending}
        slot_map = self.slot_map
        assert slot_map is not None
        owner = slot_map.owner
        if len(pending) == 1:  # every single-key command: skip the grouping machinery
            return {owner(slots[pending[0]]) or self._fallback(): pending}
        return group_by_owner(pending, lambda i: owner(slots[i]) or self._fallback())

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

    def take_refresh_request(self) -> bool:
        """Whether the caller should start a background refresh now (true once per request)."""
        if not self._refresh_wanted or not self._refresh_due():
            return False
        self._refresh_wanted = False
        return True

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
