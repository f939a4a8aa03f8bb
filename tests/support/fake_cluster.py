"""A fake cluster for the SDK's sans-I/O core, and a driver that runs its plans against it.

The fake answers calls the way real nodes do (serve owned slots, MOVED
otherwise, replicas serve synced reads) and a fake clock only moves when a
plan sleeps, so routing, retries and the near cache's read path are tested
without a network.
"""

from __future__ import annotations

import contextlib
import random
from typing import TypeVar

import grpc

from slotcache import _commands as cmd
from slotcache._core import Action, Call, ClientCore, Plan, Refresh, Sleep, Trailed
from slotcache._routing import command_keys
from slotcache.contract import SLOT_COUNT, key_slot, to_ranges
from slotcache.errors import SlotcacheError, error_for
from slotcache.v1 import cache_pb2 as pb

T = TypeVar("T")
A, B, C = "10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"
THIRDS = {A: (0, 5460), B: (5461, 10922), C: (10923, 16383)}
REFUSED = "failed to connect to all addresses; last error: UNKNOWN: Connection refused"
BROKEN = "Stream removed (recvmsg:Connection reset by peer (104))"


def key_for(address: str, name: str = "", ranges: dict[str, tuple[int, int]] = THIRDS) -> bytes:
    """A key whose slot lies in ``address``'s range."""
    start, end = ranges[address]
    i = 0
    while True:
        key = f"{name}-{i}".encode()
        if start <= key_slot(key) <= end:
            return key
        i += 1


def unavailable(message: str = REFUSED, reason: str = "") -> SlotcacheError:
    return error_for(grpc.StatusCode.UNAVAILABLE, message, reason)


# ---- a fake cluster and a driver for plans ---------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCluster:
    """Answers calls like real nodes asked for redirects: serve owned slots, else MOVED."""

    def __init__(self, ranges: dict[str, tuple[int, int]] = THIRDS, epoch: int = 3) -> None:
        self.owner: list[str | None] = [None] * SLOT_COUNT
        for address, (start, end) in ranges.items():
            for slot in range(start, end + 1):
                self.owner[slot] = address
        self.addresses = list(ranges)
        self.epoch = epoch
        self.data: dict[bytes, bytes] = {}
        self.calls: list[Call] = []
        # address -> errors to answer commands with, one per call, before serving again
        self.failures: dict[str, list[SlotcacheError]] = {}
        # addresses that refuse every connection
        self.down: set[str] = set()
        # address -> what it believes about slots (None: the truth)
        self.stale_views: dict[str, dict[int, str]] = {}
        # replica address -> its primary's address; replicas not in ``synced`` refuse reads
        self.replicas: dict[str, str] = {}
        self.synced: set[str] = set()

    def move(self, slot: int, address: str) -> None:
        self.owner[slot] = address
        self.epoch += 1

    def fail(self, address: str, *errors: SlotcacheError) -> None:
        self.failures.setdefault(address, []).extend(errors)

    def view_of(self, address: str, slot: int) -> str | None:
        return self.stale_views.get(address, {}).get(slot, self.owner[slot])

    def answer(self, call: Call) -> object:
        self.calls.append(call)
        if call.address in self.replicas and call.address not in self.down:
            return self.answer_as_replica(call)
        if call.address not in self.addresses or call.address in self.down:
            return unavailable()
        if call.rpc == "Topology":
            return self.topology(call.address)
        pending = self.failures.get(call.address)
        if pending:
            return pending.pop(0)
        keys = command_keys(call.rpc, call.request)
        for key in keys:
            slot = key_slot(key)
            owner = self.view_of(call.address, slot)
            if owner != call.address:
                if not call.redirect:
                    raise AssertionError("a proxy test sent a key to a node that does not own it")
                return error_for(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"MOVED {slot} {owner}",
                    "MOVED",
                    {"slot": str(slot), "address": owner or "", "epoch": str(self.epoch)},
                )
        return self.execute(call.rpc, call.request)

    def answer_as_replica(self, call: Call) -> object:
        """A replica serves reads of its primary's slots when asked and synced; else MOVED."""
        primary = self.replicas[call.address]
        if call.rpc == "Topology":
            return self.topology(call.address)
        slot = key_slot(command_keys(call.rpc, call.request)[0])
        if not call.replica or call.address not in self.synced or call.rpc not in ("Get", "MGet"):
            return error_for(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"MOVED {slot} {primary}",
                "MOVED",
                {"slot": str(slot), "address": primary, "epoch": str(self.epoch)},
            )
        reply = self.execute(call.rpc, call.request)
        return Trailed(reply, {"slotcache-replica-lag-ms": "3", "slotcache-replica-lag-ops": "1"})

    def topology(self, responder: str) -> pb.TopologyReply:
        reply = pb.TopologyReply(epoch=self.epoch, cluster_ok=True, responder_id=responder)
        for address in self.addresses:
            slots = [s for s in range(SLOT_COUNT) if self.owner[s] == address]
            node = reply.nodes.add(id=address, address=address, role=pb.ROLE_PRIMARY)
            for start, end in to_ranges(slots):
                node.slots.add(start=start, end=end)
        for replica, primary in self.replicas.items():
            reply.nodes.add(id=replica, address=replica, role=pb.ROLE_REPLICA, primary_id=primary)
        return reply

    def execute(self, rpc: str, request: object) -> object:
        data = self.data
        if rpc == "Get":
            value = data.get(request.key)  # type: ignore[attr-defined]
            return pb.GetReply(found=value is not None, value=value or b"")
        if rpc == "Set":
            data[request.key] = request.value  # type: ignore[attr-defined]
            return pb.SetReply(applied=True)
        if rpc == "Ttl":
            return pb.TtlReply(found=request.key in data)  # type: ignore[attr-defined]
        if rpc == "Incr":
            value = int(data.get(request.key, b"0")) + request.delta  # type: ignore[attr-defined]
            data[request.key] = str(value).encode()  # type: ignore[attr-defined]
            return pb.IncrReply(value=value)
        if rpc == "MGet":
            reply = pb.MGetReply()
            for key in request.keys:  # type: ignore[attr-defined]
                value = data.get(key)
                reply.results.add(found=value is not None, value=value or b"")
            return reply
        if rpc == "MSet":
            for entry in request.entries:  # type: ignore[attr-defined]
                data[entry.key] = entry.value
            return pb.MSetReply(applied=[True] * len(request.entries))  # type: ignore[attr-defined]
        if rpc == "MDelete":
            deleted = sum(data.pop(k, None) is not None for k in request.keys)  # type: ignore[attr-defined]
            return pb.MDeleteReply(deleted=deleted)
        raise AssertionError(f"unexpected rpc {rpc}")


class Driver:
    """Performs a core's actions against a FakeCluster, the way the client shells do."""

    def __init__(self, core: ClientCore, cluster: FakeCluster, clock: FakeClock) -> None:
        self.core = core
        self.cluster = cluster
        self.clock = clock
        self.steps: list[list[Action]] = []
        self.sleeps: list[float] = []
        self.background_refreshes = 0
        self.refresh_delays: list[float] = []
        self.run_background = True

    def run(self, plan: Plan[T]) -> T:
        try:
            actions = next(plan)
            while True:
                self.steps.append(list(actions))
                outcomes = [self.perform(a) for a in actions]
                self.maybe_refresh()
                actions = plan.send(outcomes)
        except StopIteration as done:
            self.maybe_refresh()
            result: T = done.value
            return result

    def perform(self, action: object) -> object:
        if isinstance(action, Call):
            return self.cluster.answer(action)
        if isinstance(action, Sleep):
            self.sleeps.append(action.seconds)
            self.clock.now += action.seconds
            return None
        assert isinstance(action, Refresh)
        try:
            self.run(self.core.refresh_plan(action.initial, action.timeout))
        except SlotcacheError as exc:
            return exc
        return None

    def maybe_refresh(self) -> None:
        delay = self.core.take_refresh_request()
        if delay is not None:
            self.background_refreshes += 1
            self.refresh_delays.append(delay)
            if self.run_background:
                self.clock.now += delay
                with contextlib.suppress(SlotcacheError):
                    self.run(self.core.refresh_plan(False, None))

    def command_calls(self) -> list[Call]:
        return [c for c in self.cluster.calls if c.rpc != "Topology"]


def make(
    seeds: str | list[str] = A,
    cluster: FakeCluster | None = None,
    **kwargs: object,
) -> tuple[ClientCore, FakeCluster, Driver]:
    clock = FakeClock()
    core = ClientCore(seeds, clock=clock, random=random.Random(7), **kwargs)  # type: ignore[arg-type]
    cluster = cluster or FakeCluster()
    return core, cluster, Driver(core, cluster, clock)


def run(driver: Driver, command: cmd.Command[T], timeout: float | None = None) -> T:
    return driver.run(driver.core.plan(command, timeout))
