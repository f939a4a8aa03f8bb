"""Workloads and audits for the fault tests: write under faults, record what was acknowledged.

A :class:`Writer` is a thread that keeps writing its own keys, each attempt
with a value no other attempt uses (``<writer>:<sequence>``), and records per
key the last acknowledged value and every attempt whose outcome it cannot
know (an error other than a refusal that guarantees nothing was applied).
:func:`audit` then classifies what a read returns for every key, so a lost
acknowledged write can be told apart from an unacknowledged one that
happened to survive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from slotcache.ctl.cluster_ops import create_cluster
from slotcache.ctl.launcher import ServerProcess, free_port
from slotcache.v1 import admin_pb2, cache_pb2
from tests.support.nodes import (
    NodeStubs,
    comparable,
    failure,
    key_in_slot,
    owners_by_slot,
    wait_for,
)
from tests.support.processes import Cluster, ServerFactory

NODE_TIMEOUT_MS = 1000
# Longer than anything a server may hold a write (a graceful failover pauses
# writes for up to 5 s), so that an attempt that failed is over server-side
# too and cannot overtake the writer's next attempt on the same key.
WRITE_TIMEOUT_S = 10.0
# A writer that got an error waits this long before its next attempt, so a
# dead owner does not turn the writers into a busy loop.
ERROR_PAUSE_S = 0.005
REPLICA_READ = (("slotcache-replica-read", "1"),)
NOT_ENOUGH_REPLICAS = "NOT_ENOUGH_REPLICAS"
REPLICATION_TIMEOUT = "REPLICATION_TIMEOUT"


# ---- clusters -------------------------------------------------------------------------


def start_cluster(
    factory: ServerFactory,
    primaries: int,
    replicas: int,
    *flags: str,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    create: Callable[[int, tuple[str, ...]], ServerProcess] | None = None,
) -> Cluster:
    """Like ``Cluster.start`` (same node order), but the processes boot in parallel.

    Nodes ``0..primaries-1`` are the primaries; node ``primaries + i`` is the
    first replica of primary ``i``. ``create(index, flags)`` builds node
    ``index`` (registered with ``factory``) when the default, a server on
    loopback, will not do: a server inside a network namespace, say.
    """
    args = ("--node-timeout", str(node_timeout_ms), *flags)
    count = primaries * (replicas + 1)
    if create is None:
        nodes = [factory.create(*args, cluster=True) for _ in range(count)]
    else:
        nodes = [create(i, args) for i in range(count)]
    # Ports are picked before any node binds one, so the kernel may offer the
    # same free port twice: pick again until every port is distinct.
    taken: set[tuple[str, int]] = set()
    for node in nodes:
        while (node.host, node.port) in taken:
            node.port = free_port(node.host)
        taken.add((node.host, node.port))
        while (node.host, node.bus_port) in taken:
            node.bus_port = free_port(node.host)
        taken.add((node.host, node.bus_port))
    for node in nodes:
        node.spawn()
    for node in nodes:
        if not node.wait_ready(20):
            node.kill()
            node.start()  # retries on another port if the picked one was taken meanwhile
    create_cluster([n.address for n in nodes], replicas=replicas)
    return Cluster(factory, nodes)


def start_node(factory: ServerFactory, cluster: Cluster, *flags: str) -> NodeStubs:
    """Start one more (empty) cluster node, part of ``cluster`` for teardown; stubs for it."""
    args = ("--node-timeout", str(NODE_TIMEOUT_MS), *flags)
    server = factory.start(*args, cluster=True)
    cluster.nodes.append(server)
    return NodeStubs.open(server.address)


def replicate(node: NodeStubs, primary: NodeStubs) -> None:
    """Introduce ``node`` to ``primary`` and make it a replica of it (as create_cluster does)."""
    primary_state = primary.state()
    bus = next(p.bus_address for p in primary_state.peers if p.node.id == primary_state.myself)
    host, _, port = bus.rpartition(":")
    node.admin.Meet(admin_pb2.MeetRequest(host=host, bus_port=int(port)), timeout=5)
    node.admin.Replicate(admin_pb2.ReplicateRequest(primary_id=primary_state.myself), timeout=5)


def add_replica(factory: ServerFactory, cluster: Cluster, primary: NodeStubs, *flags: str) -> int:
    """Start one more cluster node and make it replicate ``primary``; its index in ``cluster``."""
    node = start_node(factory, cluster, *flags)
    try:
        replicate(node, primary)
    finally:
        node.close()
    return len(cluster.nodes) - 1


def node_id(node: NodeStubs) -> str:
    """The node's id (40 hex digits)."""
    return node.topology().responder_id


def info(node: NodeStubs) -> admin_pb2.InfoReply:
    """The node's Info reply."""
    reply: admin_pb2.InfoReply = node.admin.Info(admin_pb2.InfoRequest(), timeout=5)
    return reply


def stats(node: NodeStubs) -> dict[str, int]:
    """The node's Info counters."""
    return dict(info(node).stats)


def role(node: NodeStubs) -> str:
    """``primary`` or ``replica``, as the node's Info reports it."""
    return info(node).server["role"]


def converged(nodes: Sequence[NodeStubs]) -> cache_pb2.TopologyReply | None:
    """The common topology if every node answers, is ok and reports the same view."""
    try:
        topologies = [n.topology() for n in nodes]
    except grpc.RpcError:
        return None
    first = comparable(topologies[0])
    if not all(t.cluster_ok for t in topologies) or any(
        comparable(t) != first for t in topologies[1:]
    ):
        return None
    return topologies[0]


def wait_converged(
    nodes: Sequence[NodeStubs], timeout: float, what: str
) -> cache_pb2.TopologyReply:
    """Wait until every node in ``nodes`` is ok and reports the same topology."""
    return wait_for(lambda: converged(nodes), timeout, what, interval=0.05)


def single_primary_per_slot(topology: cache_pb2.TopologyReply) -> list[str]:
    """Check one topology: every slot has exactly one owner, a live primary; return owner ids."""
    by_address = {n.address: n for n in topology.nodes}
    owners = owners_by_slot(topology)  # fails on a slot covered twice or not at all
    for address in set(owners):
        node = by_address[address]
        assert node.role == cache_pb2.ROLE_PRIMARY, f"{address} owns slots but is a replica"
        assert not node.failing, f"{address} owns slots but is marked FAIL"
    return [by_address[a].id for a in owners]


def slots_owned_by(topology: cache_pb2.TopologyReply, owner_id: str) -> list[int]:
    """Every slot of the node with id ``owner_id``."""
    out: list[int] = []
    for node in topology.nodes:
        if node.id == owner_id:
            for r in node.slots:
                out.extend(range(r.start, r.end + 1))
    return out


def keys_in_slots(prefix: str, slots: Sequence[int], count: int) -> list[bytes]:
    """``count`` distinct keys spread over ``slots``."""
    step = max(1, len(slots) // count)
    return [
        key_in_slot(prefix.encode(), slots[(i * step) % len(slots)], f":{i}") for i in range(count)
    ]


# ---- writers --------------------------------------------------------------------------


@dataclass(slots=True)
class KeyLog:
    """What one writer knows about one of its keys."""

    acked: bytes | None = None
    acked_seq: int = -1
    # When that acknowledgement arrived (time.monotonic()).
    acked_at: float = 0.0
    # Attempts whose outcome is unknown (an error that does not rule out the
    # write being applied): value -> sequence number.
    unsure: dict[bytes, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged write: when it was sent and answered, which key, through which node."""

    sent: float
    done: float
    key: bytes
    entry: int


class Writer(threading.Thread):
    """Writes its keys round-robin through ``entries`` until ``stop`` is set."""

    def __init__(
        self,
        name: str,
        entries: Sequence[NodeStubs],
        keys: Sequence[bytes],
        stop: threading.Event,
        min_replicas: int | None = None,
    ) -> None:
        super().__init__(name=f"writer-{name}", daemon=True)
        self.label = name
        self.entries = list(entries)
        self.keys = list(keys)
        self.stop_event = stop
        self.min_replicas = min_replicas
        self.log: dict[bytes, KeyLog] = {k: KeyLog() for k in self.keys}
        self.acks: list[Ack] = []
        self.errors: Counter[str] = Counter()
        self.attempts = 0
        self.crash: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by join_writers
            self.crash = exc

    def _loop(self) -> None:
        seq = 0
        prefix = self.label.encode() + b":"
        while not self.stop_event.is_set():
            key = self.keys[seq % len(self.keys)]
            entry = seq % len(self.entries)
            value = prefix + str(seq).encode()
            request = cache_pb2.SetRequest(key=key, value=value)
            if self.min_replicas is not None:
                request.min_replicas = self.min_replicas
            self.attempts += 1
            sent = time.monotonic()
            try:
                self.entries[entry].cache.Set(request, timeout=WRITE_TIMEOUT_S)
            except grpc.RpcError as exc:
                error = failure(exc)
                self.errors[f"{error.code.name}/{error.reason or '-'}"] += 1
                refused = (
                    error.code == grpc.StatusCode.FAILED_PRECONDITION
                    and error.reason == NOT_ENOUGH_REPLICAS
                )
                if not refused:  # anything else may have been applied somewhere
                    self.log[key].unsure[value] = seq
                time.sleep(ERROR_PAUSE_S)
            else:
                done = time.monotonic()
                record = self.log[key]
                record.acked, record.acked_seq, record.acked_at = value, seq, done
                self.acks.append(Ack(sent, done, key, entry))
            seq += 1


def run_writers(writers: Sequence[Writer]) -> None:
    """Start every writer."""
    for writer in writers:
        writer.start()


def join_writers(writers: Sequence[Writer], stop: threading.Event) -> None:
    """Stop the writers, wait for them, and fail if any crashed."""
    stop.set()
    for writer in writers:
        writer.join(WRITE_TIMEOUT_S + 5)
        assert not writer.is_alive(), f"{writer.name} did not stop"
        if writer.crash is not None:
            raise AssertionError(f"{writer.name} crashed") from writer.crash


def all_acks(writers: Iterable[Writer]) -> list[Ack]:
    """Every acknowledged write of every writer, by time of acknowledgement."""
    return sorted((a for w in writers for a in w.acks), key=lambda a: a.done)


def first_ack(
    writers: Iterable[Writer], sent_after: float, keys: Callable[[bytes], bool]
) -> Ack | None:
    """The earliest acknowledged write sent after ``sent_after`` to a key ``keys`` accepts."""
    found = [a for w in writers for a in w.acks if a.sent >= sent_after and keys(a.key)]
    return min(found, key=lambda a: a.done, default=None)


def error_summary(writers: Iterable[Writer]) -> str:
    """``code/reason: count`` over every writer, or ``none``."""
    total: Counter[str] = Counter()
    for writer in writers:
        total.update(writer.errors)
    return ", ".join(f"{k}: {n}" for k, n in sorted(total.items())) or "none"


# ---- reading back and auditing ---------------------------------------------------------


def read_values(
    node: NodeStubs,
    keys: Sequence[bytes],
    metadata: Sequence[tuple[str, str]] = (),
    batch: int = 500,
) -> dict[bytes, bytes | None]:
    """Every key's value (None when absent), read with MGet in batches."""
    out: dict[bytes, bytes | None] = {}
    for start in range(0, len(keys), batch):
        part = list(keys[start : start + batch])
        reply = node.cache.MGet(cache_pb2.MGetRequest(keys=part), timeout=10, metadata=metadata)
        for key, result in zip(part, reply.results, strict=True):
            out[key] = result.value if result.found else None
    return out


@dataclass
class Audit:
    """How every written key read back."""

    # Keys with at least one acknowledged write.
    acknowledged: int = 0
    # Read back their last acknowledged value.
    intact: int = 0
    # Read back a later attempt that was not acknowledged (allowed: it may have been applied).
    newer: int = 0
    # Acknowledged, but read back absent or as an older value: lost writes.
    lost: list[bytes] = field(default_factory=list)
    # An earlier unacknowledged attempt was applied after the acknowledged one.
    reordered: list[bytes] = field(default_factory=list)
    # Never acknowledged and read back a value (allowed only if an attempt may have applied it).
    unacked_present: int = 0
    # Read back a value this writer never wrote to the key: the machinery is wrong.
    foreign: list[bytes] = field(default_factory=list)


def audit(writers: Iterable[Writer], read: dict[bytes, bytes | None]) -> Audit:
    """Classify what ``read`` returned for every key the writers wrote."""
    result = Audit()
    for writer in writers:
        prefix = writer.label.encode() + b":"
        for key, record in writer.log.items():
            value = read[key]
            if record.acked is None:
                if value is not None:
                    if value in record.unsure:
                        result.unacked_present += 1
                    else:
                        result.foreign.append(key)
                continue
            result.acknowledged += 1
            if value == record.acked:
                result.intact += 1
            elif value is not None and value in record.unsure:
                if record.unsure[value] > record.acked_seq:
                    result.newer += 1
                else:
                    result.reordered.append(key)
            elif value is None or (
                value.startswith(prefix) and int(value[len(prefix) :]) < record.acked_seq
            ):
                result.lost.append(key)
            else:
                result.foreign.append(key)
    return result


def written_keys(writers: Iterable[Writer]) -> list[bytes]:
    """Every key any of the writers owns."""
    return [k for w in writers for k in w.keys]


def key_log(writers: Iterable[Writer], key: bytes) -> KeyLog:
    """The log of ``key`` in whichever writer owns it."""
    for writer in writers:
        if key in writer.log:
            return writer.log[key]
    raise KeyError(key)


def parallel(calls: Sequence[Callable[[], object]]) -> list[object]:
    """Run blocking calls concurrently (one thread each); return their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def replica_matches_primary(
    primary: NodeStubs, replica: NodeStubs, keys: Sequence[bytes], timeout: float = 10.0
) -> tuple[int, list[bytes]]:
    """Wait until ``replica`` caught up with ``primary``; return (keys compared, keys differing).

    Reads the replica's own copy (replica-read metadata): ``keys`` must all
    belong to ``primary``'s slots.
    """
    wait_for(
        lambda: stats(replica).get("repl.offset") == stats(primary).get("repl.offset"),
        timeout,
        f"{replica.address} to catch up with {primary.address}",
    )
    mine = read_values(primary, keys)
    theirs = read_values(replica, keys, REPLICA_READ)
    return len(keys), [k for k in keys if mine[k] != theirs[k]]
