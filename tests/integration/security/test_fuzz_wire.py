"""Random and garbled messages to every RPC of every service of live nodes.

Targets: a primary with one replica, and a standalone node. Each service gets
thousands of messages, typed (drawn from its request descriptors, see
tests/support/fuzz.py) and garbled (bytes that may not parse), sent in
concurrent batches. After every batch:

- every node is alive and its health check says SERVING (client and bus port);
- a Set then Get round trip works on every node;
- the cluster's configuration (epochs, roles, slot owners, known nodes) and
  the standalone node's are exactly as before: nothing sent changes them;
- for Cache: no write the node refused left any of its keys behind, and once
  the batch's keys are deleted the keyspace is back to its sentinel keys.

Some requests, valid and sent by anyone, change state by design; they are
never sent (typed or garbled), as :func:`allowed` says, because the node
is right to obey them: without a cluster secret, the bus trusts whoever
speaks its protocol. These are Admin Shutdown (stops the node), ClaimSlots
(takes slots), Failover on the replica (promotes it), Meet with a port a
node could dial (joins it, and dials outside the test), Forget of a member,
a bus MEET, and the bus or replication messages that claim to come from a
member (a header's sender, a replica's hello: forging a member is what the
cluster secret stops), and a migration claim naming a member. Everything
else, including what names real node ids, is sent, so deep code paths are
reached. Run without a cluster secret, the deep handlers see every message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2, cache_pb2
from slotcache_server.wire import bus_pb2, migration_pb2, replication_pb2
from tests.support import fuzz
from tests.support.nodes import NodeStubs, key_in_slot
from tests.support.processes import Cluster, ServerFactory

# Calls per batch (sent concurrently), batches per service, share of garbled calls.
BATCH = 80
BATCHES = 40
GARBLED_EVERY = 4
# How long a stream the node keeps open (a valid Subscribe, a replication link) is read.
STREAM_WINDOW_S = 0.1
# Long enough that a busy test machine never makes the nodes suspect each other.
NODE_TIMEOUT_MS = 5000
MIN_MESSAGES_PER_SERVICE = 3000
SENTINELS = (b"fuzz-sentinel-a", b"fuzz-sentinel-{b}")
_serial = itertools.count()


def _service(module: object, name: str) -> ServiceDescriptor:
    return module.DESCRIPTOR.services_by_name[name]  # type: ignore[attr-defined,no-any-return]


CACHE = _service(cache_pb2, "Cache")
ADMIN = _service(admin_pb2, "Admin")
HEALTH = _service(health_pb2, "Health")
REFLECTION = _service(reflection_pb2, "ServerReflection")
BUS = _service(bus_pb2, "Bus")
REPLICATION = _service(replication_pb2, "Replication")
MIGRATION = _service(migration_pb2, "Migration")


@dataclass
class Target:
    """One node as the fuzzer sees it: its role, its client and bus addresses."""

    name: str
    process: ServerProcess
    stubs: NodeStubs
    bus: str = ""
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    # Blocking channels for the health checks, one per port.
    health: list[grpc.Channel] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.name

    def port(self, service: ServiceDescriptor) -> str:
        on_bus = service in (BUS, REPLICATION, MIGRATION)
        return self.bus if on_bus else self.process.address


@dataclass
class Fleet:
    """The live nodes, their member ids, and an event loop for the raw calls."""

    primary: Target
    replica: Target
    standalone: Target
    member_ids: frozenset[bytes]
    loop: asyncio.AbstractEventLoop
    sent: dict[str, int] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[Target, ...]:
        return (self.primary, self.replica, self.standalone)

    def channel(self, target: Target, service: ServiceDescriptor) -> grpc.aio.Channel:
        address = target.port(service)
        if address not in target.channels:
            target.channels[address] = grpc.aio.insecure_channel(
                address,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                ],
            )
        return target.channels[address]

    def close(self) -> None:
        """Close every channel the fuzzer and the checks opened, then the loop."""

        async def close_channels() -> None:
            for t in self.targets:
                for channel in t.channels.values():
                    await channel.close()

        self.loop.run_until_complete(close_channels())
        self.loop.close()
        for t in self.targets:
            t.stubs.close()
            for blocking in t.health:
                blocking.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A primary with one replica, and a standalone node, each with its sentinel keys."""
    factory = ServerFactory(tmp_path_factory.mktemp("fuzz"))
    try:
        primary, replica = Cluster.start(factory, 1, NODE_TIMEOUT_MS, replicas=1).nodes
        standalone = factory.start()

        def target(name: str, process: ServerProcess) -> Target:
            bus = process.bus_address if process.cluster else ""
            return Target(name, process, NodeStubs.open(process.address), bus)

        nodes = [target(*n) for n in (("primary", primary), ("replica", replica))]
        members = frozenset(bytes.fromhex(t.stubs.state().myself) for t in nodes)
        fleet = Fleet(*nodes, target("standalone", standalone), members, asyncio.new_event_loop())
        try:
            for t in (fleet.primary, fleet.standalone):
                for key in SENTINELS:
                    t.stubs.set(key, b"v")
            yield fleet
            for service, count in sorted(fleet.sent.items()):
                print(f"fuzz: {count} messages to {service}")
        finally:
            fleet.close()
    finally:
        factory.close()


# ---- what may be sent ------------------------------------------------------------


def sent_at_all(fleet: Fleet, target: Target, method: str) -> bool:
    """False for the methods whose every request may change state (see the module docstring)."""
    if method in ("Shutdown", "ClaimSlots"):
        return False
    return method != "Failover" or target is not fleet.replica


def allowed(fleet: Fleet, target: Target, method: str, message: Message | None) -> bool:
    """False for the requests that change state by design (see the module docstring)."""
    if message is None:
        return True  # does not parse: the node must refuse it
    members = fleet.member_ids
    member_hex = {m.hex() for m in members}
    if method == "Meet":
        return not (message.host and 0 < message.bus_port < 65536)  # type: ignore[attr-defined]
    if method == "Forget":
        return message.node_id.lower() not in member_hex  # type: ignore[attr-defined]
    if method == "Replicate" and isinstance(message, admin_pb2.ReplicateRequest):
        return target is not fleet.replica or message.primary_id.lower() not in member_hex
    if method == "Exchange":
        assert isinstance(message, bus_pb2.BusMessage)
        return message.type != bus_pb2.MESSAGE_TYPE_MEET and message.header.sender not in members
    if method == "Replicate" and isinstance(message, replication_pb2.ReplicaMessage):
        return message.hello.replica not in members
    if method == "Migrate":
        assert isinstance(message, migration_pb2.MigrationRequest)
        return not (message.HasField("claimed") and message.claimed.target in members)
    return True


def decode(method: MethodDescriptor, raw: bytes) -> Message | None:
    return fuzz.decodes_as(method.input_type, raw)


@dataclass(frozen=True)
class Call:
    """One raw call of a batch: where it goes and the bytes of its messages."""

    target: Target
    method: MethodDescriptor
    requests: tuple[bytes, ...]
    garbled: bool

    def __repr__(self) -> str:
        shown = []
        for raw in self.requests:
            message = decode(self.method, raw)
            text = repr(raw) if message is None else str(message).replace("\n", " ")
            shown.append(text if len(text) < 300 else text[:300] + "...")
        return f"{self.method.name}@{self.target.name}({'; '.join(shown)})"


def calls(
    fleet: Fleet, service: ServiceDescriptor, targets: Sequence[Target]
) -> st.SearchStrategy[Call]:
    """Typed or garbled calls to any method of ``service`` on any of ``targets``."""
    pools = fuzz.Pools((*sorted(fleet.member_ids), b"\x01" * 20))
    overrides = {
        # Meet: any host, and ports the node could dial only rarely (see allowed()).
        "slotcache.v1.MeetRequest.bus_port": st.sampled_from([0, 65536, 2**32 - 1, 1]),
    }
    methods = list(service.methods)
    typed = {m: fuzz.messages(m.input_type, overrides, pools) for m in methods}

    def raw(target: Target, method: MethodDescriptor, garbled: bool) -> st.SearchStrategy[bytes]:
        valid = typed[method]
        strategy = fuzz.garbled(valid) if garbled else valid.map(lambda m: m.SerializeToString())
        return strategy.filter(lambda b: allowed(fleet, target, method.name, decode(method, b)))

    # Built once: strategies made inside a draw would cost hypothesis far more.
    pairs = [(t, m) for t in targets for m in methods if sent_at_all(fleet, t, m.name)]
    strategies = {(t.name, m.name, g): raw(t, m, g) for t, m in pairs for g in (False, True)}

    @st.composite
    def one(draw: st.DrawFn) -> Call:
        target, method = draw(st.sampled_from(pairs))
        is_garbled = draw(st.integers(0, GARBLED_EVERY - 1)) == 0
        count = draw(st.integers(1, 3)) if method.client_streaming else 1
        strategy = strategies[(target.name, method.name, is_garbled)]
        requests = draw(st.lists(strategy, min_size=count, max_size=count))
        return Call(target, method, tuple(requests), is_garbled)

    return one()


# ---- what must hold after a batch ------------------------------------------------


def configuration(stubs: NodeStubs) -> tuple[object, ...]:
    """What no fuzzed request may change: epochs, roles, owners and the known nodes."""
    state = stubs.state()
    peers = sorted(
        (
            p.node.id,
            p.node.role,
            p.node.primary_id,
            p.node.config_epoch,
            tuple((r.start, r.end) for r in p.node.slots),
            p.bus_address,
        )
        for p in state.peers
    )
    return (state.cluster_enabled, state.myself, state.current_epoch, tuple(peers))


def fingerprint(fleet: Fleet) -> tuple[object, ...]:
    return tuple(configuration(t.stubs) for t in fleet.targets)


def changes(before: tuple[object, ...], after: tuple[object, ...]) -> str:
    """What differs between two fingerprints, node by node."""
    lines = []
    for name, old, new in zip(("primary", "replica", "standalone"), before, after, strict=True):
        if old != new:
            lines.append(f"{name}: was {old}\n    now {new}")
    return "configuration changed:\n" + "\n".join(lines)


def check_serving(fleet: Fleet) -> None:
    """Every node is alive, healthy on every port, and answers a write and a read."""
    for t in fleet.targets:
        assert t.process.proc is not None and t.process.proc.poll() is None, f"{t.name} died"
        if not t.health:
            t.health = [grpc.insecure_channel(a) for a in (t.process.address, t.bus) if a]
        for channel in t.health:
            reply = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, t.name
        value = b"round-trip-%d" % next(_serial)
        assert t.stubs.set(SENTINELS[0], value)
        assert t.stubs.get(SENTINELS[0]) == value


def written_keys(call: Call) -> list[bytes]:
    """The keys a Cache request asks to change, as the node would decode it."""
    message = decode(call.method, call.requests[0]) if call.requests else None
    if message is None:
        return []
    if isinstance(message, cache_pb2.PipelineRequest):
        keys: list[bytes] = []
        for raw in call.requests:
            batch = decode(call.method, raw)
            for op in batch.ops if isinstance(batch, cache_pb2.PipelineRequest) else ():
                kind = op.WhichOneof("op")
                if kind is not None:
                    keys += _keys_of(getattr(op, kind))
        return keys
    return _keys_of(message)


def _keys_of(request: Message) -> list[bytes]:
    if isinstance(request, cache_pb2.MSetRequest):
        return [e.key for e in request.entries]
    if isinstance(request, (cache_pb2.MGetRequest, cache_pb2.MDeleteRequest)):
        return list(request.keys)
    return [request.key] if hasattr(request, "key") else []  # type: ignore[attr-defined]


READS = frozenset({"Get", "MGet", "Exists", "Ttl", "Topology", "Subscribe"})


def refused_write(call: Call, outcome: fuzz.Outcome) -> bool:
    """A unary write the node refused; a timeout (REPLICATION_TIMEOUT) may have been applied."""
    return (
        not outcome.ok
        and outcome.code != grpc.StatusCode.DEADLINE_EXCEEDED
        and call.method.name not in READS
        and not call.method.client_streaming
    )


def deletable(key: bytes) -> bool:
    return 0 < len(key) <= 64 * 1024


def check_keyspace(fleet: Fleet, batch: Sequence[Call], outcomes: Sequence[fuzz.Outcome]) -> None:
    """Refused writes left nothing; with the batch's keys gone, only the sentinels remain."""
    touched: dict[str, list[tuple[Call, fuzz.Outcome]]] = {}
    for call, outcome in zip(batch, outcomes, strict=True):
        touched.setdefault(_owner(fleet, call.target).name, []).append((call, outcome))
    for name, pairs in touched.items():
        node = next(t for t in fleet.targets if t.name == name)
        named: dict[bytes, int] = {}
        for call, _ in pairs:
            for key in set(written_keys(call)):
                named[key] = named.get(key, 0) + 1
        refused = {
            key
            for call, outcome in pairs
            if refused_write(call, outcome)
            for key in written_keys(call)
            if named.get(key) == 1 and deletable(key) and key not in SENTINELS
        }
        for key in refused:
            assert node.stubs.get(key) is None, f"a refused write left {key[:40]!r} on {name}"
        keys = sorted(k for k in named if deletable(k) and k not in SENTINELS)
        for start in range(0, len(keys), 1000):
            node.stubs.cache.MDelete(cache_pb2.MDeleteRequest(keys=keys[start : start + 1000]))
        held = node.stubs.keys_held()
        assert held == len(SENTINELS), f"{name} holds {held} keys, not just the sentinels"


def _owner(fleet: Fleet, target: Target) -> Target:
    """Where a write sent to ``target`` lands: the replica forwards to its primary."""
    return fleet.primary if target is fleet.replica else target


# ---- the fuzzer --------------------------------------------------------------------

# Each service, the nodes it is sent to, and its batches: a call of a service whose
# every method streams requests carries two messages on average, so half as many.
SERVICES = {
    "Cache": (CACHE, ("primary", "replica", "standalone"), BATCHES),
    "Admin": (ADMIN, ("primary", "replica", "standalone"), BATCHES),
    "Health": (HEALTH, ("primary", "replica", "standalone"), BATCHES),
    "ServerReflection": (REFLECTION, ("primary", "standalone"), BATCHES // 2 + 2),
    "Bus": (BUS, ("primary", "replica"), BATCHES),
    "Replication": (REPLICATION, ("primary", "replica"), BATCHES // 2 + 2),
    "Migration": (MIGRATION, ("primary", "replica"), BATCHES // 2 + 2),
}


async def send(fleet: Fleet, batch: Sequence[Call]) -> list[fuzz.Outcome]:
    async def one(call: Call) -> fuzz.Outcome:
        # Each call gets its own multicallable: cheap, and nothing is shared between calls.
        channel = fleet.channel(call.target, call.method.containing_service)
        return await fuzz.RawMethod(channel, call.method, STREAM_WINDOW_S)(call.requests)

    return list(await asyncio.gather(*(one(c) for c in batch)))


@pytest.mark.parametrize("name", list(SERVICES))
def test_random_and_garbled_messages_change_nothing_and_the_nodes_keep_serving(
    fleet: Fleet, name: str
) -> None:
    service, target_names, batches = SERVICES[name]
    targets = [t for t in fleet.targets if t.name in target_names]
    before = fingerprint(fleet)
    sent = 0

    @settings(
        max_examples=batches,
        deadline=None,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=st.lists(calls(fleet, service, targets), min_size=BATCH, max_size=BATCH))
    def batch_changes_nothing(batch: list[Call]) -> None:
        nonlocal sent
        outcomes = fleet.loop.run_until_complete(send(fleet, batch))
        sent += sum(len(c.requests) for c in batch)
        check_serving(fleet)
        if service is CACHE:
            check_keyspace(fleet, batch, outcomes)
        after = fingerprint(fleet)
        assert after == before, changes(before, after)

    started = time.monotonic()
    batch_changes_nothing()
    fleet.sent[name] = sent
    print(f"{name}: {sent} messages in {time.monotonic() - started:.1f}s")
    assert sent >= MIN_MESSAGES_PER_SERVICE


# ---- what the fuzzer's short streams cannot see -----------------------------------


async def refused_claim(bus: str, slot: int) -> list[str]:
    """Start a migration of ``slot``, take the handoff, claim it for an unknown node.

    Returns the kinds of the events the source sent until it ended the stream.
    """
    start = migration_pb2.MigrationStart(target=b"\x07" * 20, slots=[slot, slot], migration_id="x")
    claim = migration_pb2.MigrationClaimed(target=b"\x07" * 20, config_epoch=99)
    handed_over, ended = asyncio.Event(), asyncio.Event()

    async def requests() -> AsyncIterator[migration_pb2.MigrationRequest]:
        yield migration_pb2.MigrationRequest(start=start)
        yield migration_pb2.MigrationRequest(handoff=migration_pb2.MigrationHandoff())
        await handed_over.wait()
        yield migration_pb2.MigrationRequest(claimed=claim)
        await ended.wait()  # the target keeps its side open

    async with grpc.aio.insecure_channel(bus) as channel:
        call = channel.stream_stream(
            "/slotcache.v1.Migration/Migrate",
            request_serializer=migration_pb2.MigrationRequest.SerializeToString,
            response_deserializer=migration_pb2.MigrationEvent.FromString,
        )(requests(), timeout=10)
        kinds = []
        async for event in call:
            kinds.append(event.WhichOneof("kind"))
            if event.HasField("paused"):
                handed_over.set()
        ended.set()
        return kinds


def test_a_refused_migration_claim_ends_the_migration_and_releases_the_writes(fleet: Fleet):
    slot = 5
    started = time.monotonic()
    kinds = fleet.loop.run_until_complete(refused_claim(fleet.primary.bus, slot))
    # The source ended the stream itself, well before the caller's deadline.
    assert "paused" in kinds and time.monotonic() - started < 5
    key = key_in_slot(b"after-claim", slot)
    assert fleet.primary.stubs.cache.Set(cache_pb2.SetRequest(key=key, value=b"v"), timeout=2)
    assert fingerprint(fleet)[0] == configuration(fleet.primary.stubs)
    fleet.primary.stubs.cache.Delete(cache_pb2.DeleteRequest(key=key), timeout=2)


@pytest.mark.parametrize("service", [REPLICATION, MIGRATION])
def test_a_node_to_node_stream_closed_before_its_first_message_ends_cleanly(fleet: Fleet, service):
    [outcome] = fleet.loop.run_until_complete(
        send(fleet, [Call(fleet.primary, service.methods[0], (), garbled=False)])
    )
    assert outcome.code == grpc.StatusCode.OK and outcome.replies == ()
