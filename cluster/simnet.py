"""An in-memory cluster bus and a discrete-event network simulator for membership.

The membership state machine never touches the network or a clock, so many
nodes can run in one process: this module delivers their envelopes through an
event queue ordered by a fake integer-millisecond clock. Each node runs the
real runtime (``cluster/membership_runtime.py``, which applies every step:
persist, send, events) with this network as its transport and an in-memory
node file as its store. It is what the simulation tests and
``scripts/gossip-study`` use to check convergence, failure detection,
partitions and restarts, and to measure bus traffic, for up to about a
thousand nodes in seconds to minutes of wall time.

What it models, and why:

- Latency per message (``latency_ms``, plus up to ``jitter_ms`` drawn
  uniformly), so that exchanges take time and concurrent decisions can race.
- The gRPC shape of the real bus (``cluster/bus.py``): every envelope is one
  unary exchange, and the reply (the PONG to a PING or MEET) travels back and
  is fed to the sender's runtime, as ``BusTransport`` does.
- Each node's 100 ms cron, as ``tick`` calls every ``tick_ms``, with start
  times staggered at random so nodes do not all fire in the same millisecond.
- Killed nodes: a dead node neither ticks, receives, nor sends; replies to it
  are dropped. Messages it sent before dying are already on the wire and
  still arrive, as they would after a ``kill -9``.
- Partitions: groups of nodes that cannot reach each other. A message is
  dropped if its two ends are on different sides when it arrives, so a
  partition also cuts messages in flight, like a firewall rule would.
- Optional random loss.
- Byte accounting per node: the ``ByteSize()`` of every message the node
  sends, replies included, which is what the node would put on the wire
  (without gRPC and HTTP/2 framing).

Everything random (ids, stagger, jitter, loss, each node's own generator) is
drawn from generators seeded by ``seed``, and ties in the event queue are
broken by insertion order, so a run is a pure function of its inputs.
"""

from __future__ import annotations

import heapq
import random as _random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slotcache.contract import split_slots

from .membership.machine import Membership
from .membership.model import FAILING, Address, MembershipConfig, Peer, new_node_id
from .membership.snapshot import snapshot
from .membership.step import Envelope, Event
from .membership_runtime import MembershipRuntime, Transport
from .wire import bus_pb2

# Event kinds in the queue. Entries are plain tuples,
# (time, seq, kind, a, b, message, incarnation), because the queue holds
# millions of them in a large run and tuples are the cheapest thing to build
# and compare. TICK: a = node. DELIVER: a = sender, b = receiver. REPLY: a =
# the node that replies, b = the node that sent the request and gets the reply.
_TICK = 0
_DELIVER = 1
_REPLY = 2

DEFAULT_LATENCY_MS = 1

_QueueEntry = tuple[int, int, int, int, int, bus_pb2.BusMessage | None, int]


def sim_address(index: int) -> Address:
    """A distinct, readable address for the ``index``-th simulated node."""
    return Address(f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}", 7000, 17000)


@dataclass(frozen=True, slots=True)
class SimEvent:
    """A membership event, stamped with when and on which node it happened."""

    time: int
    node: int
    event: Event


class SimStore:
    """The in-memory node file of a simulated node.

    By default a save only counts and remembers the state machine, and the
    snapshot is taken when read: a thousand-node run saves millions of times.
    That reads the same as a snapshot taken at the last save as long as every
    step that changes the persisted part of the view asks to be persisted,
    which ``snapshot_saves`` makes checkable: each save then takes its
    snapshot at once.
    """

    def __init__(self, snapshot_saves: bool = False) -> None:
        self.saves = 0
        self._snapshot_saves = snapshot_saves
        self._saved: dict[str, Any] | None = None
        self._membership: Membership | None = None

    def save(self, membership: Membership) -> None:
        """Persist, as the runtime asks after every configuration change."""
        self.saves += 1
        self._membership = membership
        if self._snapshot_saves:
            self._saved = snapshot(membership)

    def load(self) -> dict[str, Any] | None:
        """What a restart would read: the last save, or None if nothing was saved yet."""
        if self._snapshot_saves or self._membership is None:
            return self._saved
        return snapshot(self._membership)


@dataclass(slots=True)
class SimNode:
    """One simulated node: its runtime and what the network knows about it."""

    index: int
    address: Address
    runtime: MembershipRuntime
    store: SimStore
    alive: bool = True
    # Bumped by every restart, so that ticks and replies meant for an earlier
    # life of the node are recognised and dropped.
    incarnation: int = 0
    # Everything this node put on the wire, replies included.
    bytes_sent: int = 0
    messages_sent: int = 0

    @property
    def membership(self) -> Membership:
        """The state machine of the node's current life."""
        return self.runtime.membership

    @property
    def id(self) -> bytes:
        """The node id of the current state machine."""
        return self.runtime.membership.id


class SimTransport:
    """The in-memory implementation of the runtime's ``Transport`` for one node."""

    def __init__(self, net: SimNetwork, index: int) -> None:
        self._net = net
        self._index = index

    def send_all(self, envelopes: Sequence[Envelope]) -> None:
        """Queue each envelope for delivery after the network latency."""
        self._net.send(self._index, envelopes)


@dataclass(slots=True)
class TypeTraffic:
    """Messages and bytes of one message type, across the whole network."""

    messages: int = 0
    bytes: int = 0


class SimNetwork:
    """Many membership state machines on one fake clock and one event queue."""

    def __init__(
        self,
        config: MembershipConfig | None = None,
        *,
        seed: int = 0,
        latency_ms: int = DEFAULT_LATENCY_MS,
        jitter_ms: int = 0,
        loss: float = 0.0,
        start_ms: int = 0,
        snapshot_saves: bool = False,
    ) -> None:
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency and jitter must be >= 0")
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.config = config or MembershipConfig()
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.loss = loss
        self.snapshot_saves = snapshot_saves
        self.now = start_ms
        self.nodes: list[SimNode] = []
        # Membership events of every node, oldest first.
        self.events: list[SimEvent] = []
        self.traffic: dict[int, TypeTraffic] = {}
        # Called with each event as it is recorded (tests and studies use it to
        # timestamp detections without polling).
        self.on_event: Callable[[SimEvent], None] | None = None
        self.delivered = 0
        self.dropped = 0
        self._rng = _random.Random(seed)
        self._queue: list[_QueueEntry] = []
        self._seq = 0
        self._by_address: dict[Address, int] = {}
        # Partition side of each node; messages between different sides are dropped.
        self._side: list[int] = []

    # ---- building the network ------------------------------------------------

    def add_node(
        self,
        *,
        config: MembershipConfig | None = None,
        address: Address | None = None,
        node_id: bytes | None = None,
    ) -> SimNode:
        """Create a fresh, unmet node with its own seeded random generator."""
        index = len(self.nodes)
        address = address or sim_address(index)
        if address in self._by_address:
            raise ValueError(f"address {address.bus} is already taken")
        node_id = node_id or new_node_id(self._rng.randbytes)
        membership = Membership(
            config or self.config,
            Peer(id=node_id, address=address),
            self.now,
            random=_random.Random(self._rng.getrandbits(64)),
        )
        store = SimStore(self.snapshot_saves)
        node = SimNode(index, address, self._runtime(index, membership, store), store)
        self.nodes.append(node)
        self._side.append(0)
        self._by_address[address] = index
        self._schedule_ticks(node)
        return node

    def _runtime(self, index: int, membership: Membership, store: SimStore) -> MembershipRuntime:
        def record(event: Event) -> None:
            self._record(index, event)

        return MembershipRuntime(membership, SimTransport(self, index), store, self._clock, record)

    def _clock(self) -> int:
        return self.now

    def _schedule_ticks(self, node: SimNode) -> None:
        first = self.now + 1 + self._rng.randrange(node.membership.config.tick_ms)
        self._push(first, _TICK, node.index, 0, None, node.incarnation)

    def meet(self, introducer: int, newcomer: int) -> Peer:
        """Run an operator's MEET: ``introducer`` introduces itself to ``newcomer``.

        Like the runtime's ``meet``, this is a synchronous exchange outside the
        event queue (the operator waits for it); it raises ConnectionError and
        changes nothing if the two cannot reach each other.
        """
        a, b = self.nodes[introducer], self.nodes[newcomer]
        if not a.alive or not b.alive or self._side[introducer] != self._side[newcomer]:
            raise ConnectionError(f"node {newcomer} is unreachable from node {introducer}")
        message = a.runtime.meet_message()
        self._account(a, message)
        reply = b.runtime.handle(message)
        if reply is None:
            raise ConnectionError(f"node {newcomer} did not answer the MEET")
        self._account(b, reply)
        return a.runtime.complete_meet(reply)

    # ---- faults ----------------------------------------------------------------

    def kill(self, index: int) -> None:
        """Stop a node: from now on it neither ticks, receives nor sends."""
        self.nodes[index].alive = False

    def restart(self, index: int, membership: Membership, *, announce: bool = True) -> None:
        """Bring a node back with ``membership`` (e.g. restored from its node file).

        The node keeps its address and its store, and saves on start as a
        real node does. With ``announce``, it pings every node it knows at
        once, as a real node does on start.
        """
        node = self.nodes[index]
        if membership.myself.address != node.address:
            raise ValueError("a restarted node must listen on its old address")
        node.runtime = self._runtime(index, membership, node.store)
        node.alive = True
        node.incarnation += 1
        self._schedule_ticks(node)
        node.runtime.save()
        if announce:
            node.runtime.announce()

    def partition(self, *groups: Iterable[int]) -> None:
        """Split the network: each group becomes one side, every other node another.

        Nodes in different sides cannot exchange messages until :meth:`heal`.
        A new call replaces the previous partition.
        """
        side = [0] * len(self.nodes)
        seen: set[int] = set()
        for number, group in enumerate(groups, start=1):
            for index in group:
                if index in seen:
                    raise ValueError(f"node {index} is in two groups")
                seen.add(index)
                side[index] = number
        self._side = side

    def heal(self) -> None:
        """End every partition."""
        self._side = [0] * len(self.nodes)

    def reachable(self, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` are on the same side of any partition."""
        return self._side[a] == self._side[b]

    # ---- the transport -----------------------------------------------------------

    def transport(self, index: int) -> Transport:
        """The ``Transport`` of a node."""
        return self.nodes[index].runtime.transport

    def send(self, source: int, envelopes: Iterable[Envelope]) -> None:
        """Put ``source``'s envelopes on the wire (counted even if later dropped)."""
        node = self.nodes[source]
        if not node.alive:
            return
        by_address = self._by_address
        for envelope in envelopes:
            self._account(node, envelope.message)
            dest = by_address.get(envelope.dest)
            if dest is None:
                self.dropped += 1  # nobody listens there
                continue
            self._push(self._arrival(), _DELIVER, source, dest, envelope.message, node.incarnation)

    def _account(self, node: SimNode, message: bus_pb2.BusMessage) -> None:
        size = message.ByteSize()
        node.bytes_sent += size
        node.messages_sent += 1
        traffic = self.traffic.get(message.type)
        if traffic is None:
            traffic = self.traffic[message.type] = TypeTraffic()
        traffic.messages += 1
        traffic.bytes += size

    def _arrival(self) -> int:
        if self.jitter_ms:
            return self.now + self.latency_ms + self._rng.randint(0, self.jitter_ms)
        return self.now + self.latency_ms

    def _push(
        self,
        time: int,
        kind: int,
        a: int,
        b: int,
        message: bus_pb2.BusMessage | None,
        incarnation: int,
    ) -> None:
        # ``incarnation`` is that of the node whose life the event belongs to:
        # the ticking node, or the node that sent the request (a reply must
        # reach the same life that asked).
        self._seq += 1
        heapq.heappush(self._queue, (time, self._seq, kind, a, b, message, incarnation))

    def _lost(self) -> bool:
        return self.loss > 0.0 and self._rng.random() < self.loss

    # ---- running -------------------------------------------------------------------

    def run_until(self, time: int) -> None:
        """Process every event due at or before ``time``; the clock then reads ``time``."""
        queue = self._queue
        nodes = self.nodes
        pop = heapq.heappop
        while queue and queue[0][0] <= time:
            when, _, kind, a, b, message, inc = pop(queue)
            self.now = when
            if kind == _TICK:
                node = nodes[a]
                if not node.alive or node.incarnation != inc:
                    continue  # the tick chain of a dead node, or of an earlier life
                node.runtime.tick()
                self._push(when + node.membership.config.tick_ms, _TICK, a, 0, None, inc)
            elif kind == _DELIVER:
                receiver = nodes[b]
                assert message is not None
                if not receiver.alive or self._side[a] != self._side[b] or self._lost():
                    self.dropped += 1
                    continue
                self.delivered += 1
                reply = receiver.runtime.handle(message)
                if reply is not None:
                    self._account(receiver, reply)
                    self._push(self._arrival(), _REPLY, b, a, reply, inc)
            else:
                requester = nodes[b]
                assert message is not None
                if (
                    not requester.alive
                    or requester.incarnation != inc
                    or self._side[a] != self._side[b]
                    or self._lost()
                ):
                    self.dropped += 1
                    continue
                self.delivered += 1
                requester.runtime.on_reply(message)
        if time > self.now:
            self.now = time

    def run_for(self, duration_ms: int) -> None:
        """Advance the clock by ``duration_ms``."""
        self.run_until(self.now + duration_ms)

    def wait_for(
        self, condition: Callable[[], bool], timeout_ms: int, step_ms: int = 100
    ) -> int | None:
        """Run until ``condition()`` holds, checking every ``step_ms``.

        Returns the simulated time at which it was first seen to hold (so the
        answer is accurate to ``step_ms``), or None if it did not within
        ``timeout_ms``; the clock then reads the deadline.
        """
        deadline = self.now + timeout_ms
        while True:
            if condition():
                return self.now
            if self.now >= deadline:
                return None
            self.run_until(min(self.now + step_ms, deadline))

    def _record(self, index: int, event: Event) -> None:
        record = SimEvent(self.now, index, event)
        self.events.append(record)
        if self.on_event is not None:
            self.on_event(record)

    # ---- observing -----------------------------------------------------------------

    def alive(self) -> list[SimNode]:
        """The nodes that are up."""
        return [node for node in self.nodes if node.alive]

    def reset_traffic(self) -> None:
        """Zero every byte and message counter (to measure a window)."""
        for node in self.nodes:
            node.bytes_sent = 0
            node.messages_sent = 0
        self.traffic.clear()

    def total_bytes(self) -> int:
        """Bytes sent by all nodes since the last reset."""
        return sum(node.bytes_sent for node in self.nodes)

    def converged(self, nodes: Sequence[SimNode] | None = None) -> bool:
        """Whether ``nodes`` (default: the live ones) share one healthy view.

        Every one of them knows every other, sees none of them PFAIL or FAIL,
        agrees on each one's config epoch, has the same owner for every slot,
        and has cluster state ok. Cheap checks come first, so polling this
        while a large cluster is still converging costs little.
        """
        group = list(nodes) if nodes is not None else self.alive()
        if not group:
            return True
        for node in group:
            m = node.membership
            if not m.ok or len(m.nodes) < len(group):
                return False
        reference = group[0].membership.slots.snapshot()
        for node in group:
            known = node.membership.nodes
            for other in group:
                peer = known.get(other.id)
                if peer is None:
                    return False
                if peer is node.membership.myself:
                    continue
                if peer.flags & FAILING:
                    return False
                if peer.config_epoch != other.membership.myself.config_epoch:
                    return False
        return all(node.membership.slots.snapshot() == reference for node in group[1:])


def create_cluster(
    n: int,
    config: MembershipConfig | None = None,
    *,
    seed: int = 0,
    latency_ms: int = DEFAULT_LATENCY_MS,
    jitter_ms: int = 0,
    loss: float = 0.0,
    replicas: int = 0,
    snapshot_saves: bool = False,
) -> SimNetwork:
    """Form an ``n``-primary cluster the way ``clusterctl create`` does.

    Node ``i`` gets config epoch ``i + 1`` (distinct epochs, so no collision
    has to be resolved) and the ``i``-th of ``n`` even slot ranges; then node
    0 meets every other node. With ``replicas``, nodes ``n + i * replicas + j``
    replicate primary ``i``. Nothing has run yet: the clock is at 0 and the
    rest of the cluster learns about each other through gossip once the
    caller runs the network.
    """
    net = SimNetwork(
        config,
        seed=seed,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        loss=loss,
        snapshot_saves=snapshot_saves,
    )
    for (start, end), i in zip(split_slots(n), range(n), strict=True):
        node = net.add_node()
        node.runtime.set_config_epoch(i + 1)
        node.runtime.add_slots(range(start, end + 1))
    for i in range(1, n):
        net.meet(0, i)
    for i in range(n):
        for _ in range(replicas):
            replica = net.add_node()
            net.meet(i, replica.index)
            replica.runtime.replicate(net.nodes[i].id)
            net.meet(0, replica.index)
    return net


__all__ = [
    "DEFAULT_LATENCY_MS",
    "SimEvent",
    "SimNetwork",
    "SimNode",
    "SimStore",
    "SimTransport",
    "TypeTraffic",
    "create_cluster",
    "sim_address",
]
