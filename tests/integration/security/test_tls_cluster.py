"""A cluster whose every connection is mutual TLS: it forms, forwards, replicates, migrates."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import slotcache
from slotcache.ctl.certs import LocalCerts, generate_local
from tests.support.ctl import Ctl
from tests.support.nodes import NodeStubs, key_in_slot, wait_for
from tests.support.processes import ServerFactory
from tests.support.security import Security

# Keys all over the slots, and some in the slots the reshard moves first (0-4).
KEYS = [f"tls-key-{i}".encode() for i in range(300)] + [
    key_in_slot(b"moving-", slot, str(i)) for slot in range(5) for i in range(10)
]


def _bus_health(address: str, credentials: grpc.ChannelCredentials | None) -> bool:
    channel = (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(address, credentials)
    )
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_tls_cluster_forms_forwards_replicates_and_migrates_a_slot(
    servers: ServerFactory, ctl: Ctl, certs: LocalCerts, tmp_path: Path
) -> None:
    nodes = [servers.create("--node-timeout", "1000", cluster=True, tls=certs) for _ in range(4)]
    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(lambda node: node.start(), nodes))
    flags = certs.ctl_flags()
    primaries = [n.address for n in nodes[:3]]
    created = ctl("create", *primaries, "--replicas", "0", *flags)
    assert created.code == 0, created.err
    stubs = [NodeStubs.open(n.address, Security(certs)) for n in nodes]
    ids = [s.topology().responder_id for s in stubs]
    added = ctl("add-node", nodes[3].address, primaries[0], "--replica-of", ids[0], *flags)
    assert added.code == 0, added.err

    # Every key through node 0, which forwards two thirds of them to their owners.
    with slotcache.Client(primaries[0], routing="proxy", tls=certs.client_options()) as proxy:
        for key in KEYS:
            proxy.set(key, key[::-1])
        assert proxy.stats.redirects == 0
    assert {s.keys_held() for s in stubs[:3]} != {0}
    # The replica holds exactly what its primary holds.
    wait_for(lambda: stubs[3].keys_held() == stubs[0].keys_held() > 0, 10, "the replica in sync")

    held = stubs[1].keys_held()
    moved = ctl(
        "reshard", primaries[0], "--from", ids[0], "--to", ids[1], "--slots", "5", "--yes", *flags
    )
    assert moved.code == 0, moved.err
    assert stubs[1].keys_held() == held + 50
    view = json.loads(ctl("slots", primaries[1], "--json", *flags).out)
    assert view  # the new owner answers over TLS
    with slotcache.Client(primaries, tls=certs.client_options()) as smart:
        assert [smart.get(key) for key in KEYS] == [key[::-1] for key in KEYS]
    owned = sum(
        r.end - r.start + 1 for n in stubs[1].topology().nodes if n.id == ids[1] for r in n.slots
    )
    assert owned == 5461 + 5

    # The bus speaks mutual TLS with the cluster's CA only.
    bus = nodes[0].bus_address
    assert _bus_health(bus, certs.client_options().credentials())
    assert not _bus_health(bus, None)
    stranger = generate_local(tmp_path / "stranger")
    assert not _bus_health(bus, stranger.client_options().credentials())
    no_cert = slotcache.TlsOptions(ca=certs.ca).credentials()
    assert not _bus_health(bus, no_cert)
    for s in stubs:
        s.close()
