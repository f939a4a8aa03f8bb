"""The authenticated cluster bus: with a cluster secret only members are heard.

A test process plays the outsider: it builds bus messages itself and
sends them with a plain generated stub straight to a node's bus port,
without a token, with a token under a wrong secret, with a stale one, one
meant for another node, or a valid one a second time. Each is refused,
counted, and leaves every node's view (nodes, roles, slots, epochs) as it
was. The same cluster then fails over as any cluster does.

When the session runs with TLS (``SLOTCACHE_TEST_TLS``) the outsider
connects with the client certificate of the cluster's CA, and every
refusal is for that: it is not a node certificate.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from slotcache import TlsOptions
from slotcache.ctl.certs import LocalCerts
from slotcache.ctl.rpc import NodeHandle, OperationError
from slotcache.v1 import admin_pb2
from slotcache_server.security.node_auth import METADATA_KEY, NodeAuth, wall_ms
from slotcache_server.wire import bus_pb2, bus_pb2_grpc, migration_pb2, migration_pb2_grpc
from slotcache_server.wire import replication_pb2 as repl_pb2
from slotcache_server.wire import replication_pb2_grpc as repl_grpc
from tests.integration.observability.scrape import metrics_port, scrape, value
from tests.support import security
from tests.support.nodes import (
    Nodes,
    NodeStubs,
    comparable,
    expect_failure,
    key_in_slot,
    wait_for,
)
from tests.support.processes import Cluster, ServerFactory
from tests.support.workload import replica_matches_primary

SECRET = b"cluster-secret-" + b"s" * 49
WRONG = b"another-secret-" + b"w" * 49
NODE_TIMEOUT_MS = 1000
EXCHANGE = "/slotcache.v1.Bus/Exchange"
REPLICATE = "/slotcache.v1.Replication/Replicate"
MIGRATE = "/slotcache.v1.Migration/Migrate"
STRANGER = bytes(range(100, 120))
HIGH_EPOCH = 1_000_000
EVERY_SLOT = (0, 16383)
REFUSED = "cluster.calls_refused"
REASONS = ("missing", "malformed", "bad_mac", "stale", "wrong_node", "not_node_cert")
Metadata = tuple[tuple[str, str], ...]


def secret_file(directory: Path, secret: bytes) -> Path:
    path = directory / f"secret-{secret[:7].decode()}"
    path.write_bytes(secret + b"\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three primaries with a replica each, sharing SECRET."""
    base = tmp_path_factory.mktemp("busauth")
    flags = ("--cluster-secret-file", str(secret_file(base, SECRET)))
    factory = ServerFactory(base / "servers")
    try:
        yield Cluster.start(factory, 3, NODE_TIMEOUT_MS, *flags, replicas=1)
    finally:
        factory.close()


@pytest.fixture(scope="module")
def nodes(secured: Cluster) -> Iterator[Nodes]:
    with contextlib.closing(Nodes(secured.addresses)) as stubs:
        yield stubs


def view(nodes: Nodes) -> list[tuple[object, ...]]:
    """What every node believes: nodes, roles, slots, config epochs, current epoch."""
    return [(comparable(n.topology()), n.state().current_epoch) for n in nodes]


def refused(nodes: Nodes) -> int:
    return sum(n.admin.Info(admin_pb2.InfoRequest(), timeout=5).stats[REFUSED] for n in nodes)


def node_ids(nodes: Nodes) -> list[bytes]:
    by_address = {n.address: bytes.fromhex(n.id) for n in nodes[0].topology().nodes}
    return [by_address[n.address] for n in nodes]


def header(sender: bytes, epoch: int, slots: tuple[int, ...] = ()) -> bus_pb2.Header:
    return bus_pb2.Header(
        sender=sender,
        current_epoch=epoch,
        config_epoch=epoch,
        flags=bus_pb2.NODE_FLAG_PRIMARY,
        slots=slots,
        cluster_ok=True,
        address=bus_pb2.NodeAddress(host="127.0.0.1", port=1, bus_port=2),
    )


def forgeries(ids: list[bytes]) -> dict[str, tuple[int, bus_pb2.BusMessage]]:
    """Messages that would take the cluster apart if believed, and the node each goes to."""
    n0, n1, r0 = ids[0], ids[1], ids[3]
    msg = bus_pb2.BusMessage
    return {
        "FAIL of node1": (2, msg(type=bus_pb2.MESSAGE_TYPE_FAIL, header=header(n0, 1), failing=n1)),
        "failure report of node1": (
            2,
            msg(type=bus_pb2.MESSAGE_TYPE_REPORT, header=header(n0, 1), failing=n1),
        ),
        "slot claim in a PING": (
            1,
            msg(type=bus_pb2.MESSAGE_TYPE_PING, header=header(n0, HIGH_EPOCH, EVERY_SLOT)),
        ),
        "UPDATE giving node0 every slot": (
            1,
            msg(
                type=bus_pb2.MESSAGE_TYPE_UPDATE,
                header=header(n0, HIGH_EPOCH),
                update=bus_pb2.NodeConfig(node=n0, config_epoch=HIGH_EPOCH, slots=EVERY_SLOT),
            ),
        ),
        "MEET from a stranger": (
            0,
            msg(type=bus_pb2.MESSAGE_TYPE_MEET, header=header(STRANGER, HIGH_EPOCH)),
        ),
        "vote request for node0's replica": (
            1,
            msg(type=bus_pb2.MESSAGE_TYPE_FAILOVER_AUTH_REQUEST, header=header(r0, HIGH_EPOCH)),
        ),
        "vote for node0's replica": (
            3,
            msg(type=bus_pb2.MESSAGE_TYPE_FAILOVER_AUTH_ACK, header=header(n1, HIGH_EPOCH)),
        ),
    }


def credentials(ids: list[bytes], to: int) -> dict[str, Callable[[str, bytes], Metadata]]:
    """Ways an outsider (or a replayer) might try to pass a message to node ``to``."""
    wrong = NodeAuth(lambda: (WRONG,))
    stale = NodeAuth(lambda: (SECRET,), clock_ms=lambda: wall_ms() - 60_000)
    right = NodeAuth(lambda: (SECRET,))
    elsewhere = ids[(to + 1) % len(ids)]
    return {
        "no token": lambda method, body: (),
        "garbled token": lambda method, body: ((METADATA_KEY, "v1.not-a-token"),),
        "wrong secret": lambda method, body: wrong.call_metadata(method, body, ids[to]),
        "stale token": lambda method, body: stale.call_metadata(method, body, ids[to]),
        "token for another node": lambda method, body: right.call_metadata(method, body, elsewhere),
    }


def bus_channel(address: str, certs: LocalCerts | None, as_node: bool = False) -> grpc.Channel:
    """A channel to a bus port: plaintext, or mutual TLS with the client or a node certificate."""
    if certs is None:
        return grpc.insecure_channel(address)
    pair = certs.node if as_node else certs.client
    tls = TlsOptions(ca=certs.ca, cert=pair.cert, key=pair.key)
    return grpc.secure_channel(address, tls.credentials())


def exchange(
    address: str,
    message: bus_pb2.BusMessage,
    metadata: Metadata,
    certs: LocalCerts | None = None,
    as_node: bool = False,
) -> grpc.StatusCode:
    with bus_channel(address, certs, as_node) as channel:
        try:
            bus_pb2_grpc.BusStub(channel).Exchange(message, metadata=metadata, timeout=5)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_forged_bus_messages_are_dropped_counted_and_change_nothing(
    secured: Cluster, nodes: Nodes
) -> None:
    ids = node_ids(nodes)
    certs = security.current().certs
    before, refused_before = view(nodes), refused(nodes)
    scraped_before = scrape(metrics_port(secured.nodes[1]))
    outcomes = {}
    for name, (to, message) in forgeries(ids).items():
        body = message.SerializeToString()
        for how, metadata in credentials(ids, to).items():
            sent = metadata(EXCHANGE, body)
            code = exchange(secured.nodes[to].bus_address, message, sent, certs)
            outcomes[(name, how)] = code
    assert set(outcomes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, outcomes

    # A valid message is heard once; played again it is refused. (It is harmless:
    # a FAIL of a node nobody knows, from a node nobody knows.)
    harmless = bus_pb2.BusMessage(
        type=bus_pb2.MESSAGE_TYPE_FAIL, header=bus_pb2.Header(sender=STRANGER), failing=STRANGER
    )
    token = NodeAuth(lambda: (SECRET,)).call_metadata(
        EXCHANGE, harmless.SerializeToString(), ids[0]
    )
    bus = secured.nodes[0].bus_address
    assert exchange(bus, harmless, token, certs, as_node=True) == grpc.StatusCode.OK
    assert exchange(bus, harmless, token, certs, as_node=True) == grpc.StatusCode.UNAUTHENTICATED

    # A believed message would have changed its receiver's view before its call returned.
    assert refused(nodes) - refused_before == len(outcomes) + 1
    assert view(nodes) == before
    for node in nodes:
        assert node.topology().cluster_ok
    scraped = scrape(metrics_port(secured.nodes[1]))
    name = "slotcache_cluster_calls_refused_total"
    moved = {
        reason: value(scraped, name, reason=reason) - value(scraped_before, name, reason=reason)
        for reason in REASONS
    }
    # Node 1 got three of the forgeries, each in five ways.
    expected = {**dict.fromkeys(REASONS, 3), "not_node_cert": 0}
    if certs is not None:
        expected = {**dict.fromkeys(REASONS, 0), "not_node_cert": 15}
    assert moved == expected, moved


def test_replication_and_migration_refuse_non_members(secured: Cluster, nodes: Nodes) -> None:
    ids = node_ids(nodes)
    before = view(nodes)
    primary = secured.nodes[0]
    replicas_before = nodes[0].admin.Info(admin_pb2.InfoRequest()).stats["repl.replicas"]
    hello = repl_pb2.ReplicaMessage(hello=repl_pb2.ReplicaHello(replica=STRANGER))
    start = migration_pb2.MigrationRequest(
        start=migration_pb2.MigrationStart(target=STRANGER, slots=(0, 100), migration_id="x")
    )
    with bus_channel(primary.bus_address, security.current().certs) as channel:
        for how, metadata in credentials(ids, 0).items():
            stream = repl_grpc.ReplicationStub(channel).Replicate(
                iter([hello]), metadata=metadata(REPLICATE, b""), timeout=5
            )
            failed = expect_failure(lambda s=stream: list(s))  # type: ignore[misc]
            assert failed.code == grpc.StatusCode.UNAUTHENTICATED, (how, failed)
            migration = migration_pb2_grpc.MigrationStub(channel).Migrate(
                iter([start]), metadata=metadata(MIGRATE, b""), timeout=5
            )
            failed = expect_failure(lambda s=migration: list(s))  # type: ignore[misc]
            assert failed.code == grpc.StatusCode.UNAUTHENTICATED, (how, failed)
    stats = nodes[0].admin.Info(admin_pb2.InfoRequest()).stats
    assert stats["repl.replicas"] == replicas_before
    assert view(nodes) == before


def test_a_node_with_another_secret_cannot_join(
    secured: Cluster, nodes: Nodes, tmp_path: Path
) -> None:
    outsider = secured.factory.start(
        "--cluster-secret-file",
        str(secret_file(tmp_path, WRONG)),
        "--node-timeout",
        str(NODE_TIMEOUT_MS),
        cluster=True,
    )
    before, refused_before = view(nodes), refused(nodes)
    with (
        NodeHandle.open(outsider.address, 5.0) as handle,
        NodeHandle.open(secured.addresses[0], 5.0) as member,
    ):
        # Its MEET is refused by the member; the member's MEET is refused by it.
        with pytest.raises(OperationError, match="UNAUTHENTICATED"):
            handle.meet(secured.nodes[0].bus_address)
        with pytest.raises(OperationError, match="UNAUTHENTICATED"):
            member.meet(outsider.bus_address)
        assert handle.state().known_nodes == 1
    assert refused(nodes) == refused_before + 1
    assert view(nodes) == before


def test_the_cluster_fails_over_as_usual(secured: Cluster, nodes: Nodes) -> None:
    """Runs last: it kills node 0, whose replica (node 3) takes its slots."""
    keys = [key_in_slot(b"fo", slot) for slot in range(0, 5000, 250)]
    for i, key in enumerate(keys):
        # Through node 1, so each write is forwarded to node 0 with a token.
        assert nodes[1].set(key, b"v%d" % i)
    assert replica_matches_primary(nodes[0], nodes[3], keys) == (len(keys), [])
    promoted = node_ids(nodes)[3].hex()

    secured.kill(0)

    def failed_over() -> bool:
        for node in (nodes[1], nodes[2], nodes[3]):
            topology = node.topology()
            owner = [n.id for n in topology.nodes if any(r.start == 0 for r in n.slots)]
            if not topology.cluster_ok or owner != [promoted]:
                return False
        return True

    wait_for(failed_over, 10 * NODE_TIMEOUT_MS / 1000, "node 3 to take node 0's slots")
    lost = [key for i, key in enumerate(keys) if nodes[2].get(key) != b"v%d" % i]
    assert lost == []


def test_under_tls_cluster_a_client_certificate_of_the_same_ca_cannot_speak_on_the_bus(
    servers: ServerFactory, certs: LocalCerts
) -> None:
    node = servers.start("--node-timeout", str(NODE_TIMEOUT_MS), cluster=True, tls=certs)
    harmless = bus_pb2.BusMessage(
        type=bus_pb2.MESSAGE_TYPE_FAIL, header=bus_pb2.Header(sender=STRANGER), failing=STRANGER
    )
    # The node certificate is heard; the client certificate, from the same CA, is not.
    assert exchange(node.bus_address, harmless, (), certs, as_node=True) == grpc.StatusCode.OK
    claim = forgeries([STRANGER] * 4)["UPDATE giving node0 every slot"][1]
    assert exchange(node.bus_address, claim, (), certs) == grpc.StatusCode.UNAUTHENTICATED
    with bus_channel(node.bus_address, certs) as channel:
        hello = repl_pb2.ReplicaMessage(hello=repl_pb2.ReplicaHello(replica=STRANGER))
        stream = repl_grpc.ReplicationStub(channel).Replicate(iter([hello]), timeout=5)
        assert expect_failure(lambda: list(stream)).code == grpc.StatusCode.UNAUTHENTICATED
    stub = NodeStubs.open(node.address, security.Security(certs))
    try:
        assert stub.admin.Info(admin_pb2.InfoRequest(), timeout=5).stats[REFUSED] == 2
        assert stub.state().known_nodes == 1
    finally:
        stub.close()
