"""A proxy beside three primaries and their replicas: it forwards, owns nothing and leaves.

One cluster serves the whole module (starting one costs seconds): three
primaries, a replica of the first, node timeout 1000 ms, and one proxy with
a RESP port in forward mode, added with ``clusterctl add-node``. The tests
that reshape the cluster come last, in this order: a rebalance onto a new
empty primary, a primary killed and replaced by its replica, and the
proxy's own SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import pytest
import redis

from slotcache.contract import SLOT_COUNT, key_slot
from slotcache.ctl.add_node import add_node
from slotcache.ctl.cluster_ops import OperationError, create_cluster, fetch_state
from slotcache.ctl.launcher import ServerProcess, free_port
from slotcache.v1 import admin_pb2, cache_pb2
from slotcache_server.membership.proxies import FORGET_AFTER_TIMEOUTS
from tests.support import sdk, security
from tests.support.ctl import Ctl
from tests.support.nodes import (
    REDIRECT,
    NodeStubs,
    expect_failure,
    key_in_slot,
    owners_by_slot,
    slots_of,
    wait_for,
)
from tests.support.processes import Cluster, ServerFactory

KEYS = 2_000
CACHE = cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name
# Concurrent unary calls on one channel: well under the server's streams per connection.
WAVE = 200
TIMEOUT = 10.0


@dataclass
class Tier:
    """The cluster, its proxy, and stubs that talk to the proxy as a plain client would."""

    factory: ServerFactory
    cluster: Cluster
    proxy: ServerProcess
    proxy_id: str
    resp_port: int
    stub: NodeStubs
    # A running node outside the cluster, for the rebalance to add.
    spare: ServerProcess
    # A second proxy, not in the cluster yet: added, then killed without a goodbye.
    doomed: ServerProcess

    @property
    def seed(self) -> str:
        return self.cluster.addresses[1]


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    base = tmp_path_factory.mktemp("proxy-tier")
    factory = ServerFactory(base)
    # Members sign their bus messages (a proxy's LEAVE too), and a proxy can vouch
    # for a RESP client's user when it forwards (SLOTCACHE_TEST_ACL=1 runs with users).
    secret = base / "cluster-secret"
    secret.write_bytes(b"proxy-tier-secret-" + b"p" * 46 + b"\n")
    secret.chmod(0o600)
    stub: NodeStubs | None = None
    try:
        resp_port = free_port("127.0.0.1")
        # No handoff on SIGTERM: the teardown stops every node, and handoffs would slow it.
        common = (
            "--node-timeout",
            "1000",
            "--shutdown-failover",
            "no",
            "--cluster-secret-file",
            str(secret),
        )
        proxy_flags = ("--proxy", "yes", "--resp-port", str(resp_port), "--resp-routing", "forward")
        # Three primaries, a replica of the first, the proxy, and an empty node for the rebalance.
        nodes = [factory.create(*common, cluster=True) for _ in range(4)]
        proxy = factory.create(*common, *proxy_flags, cluster=True)
        doomed = factory.create(*common, "--proxy", "yes", cluster=True)
        spare = factory.create(*common, cluster=True)
        booting = [*nodes, proxy, doomed, spare]
        for node in booting:
            node.spawn()
        for node in booting:
            if not node.wait_ready(30):
                node.kill()
                node.start()  # on another port, if the one picked was taken meanwhile
        created = create_cluster([n.address for n in nodes[:3]], timeout=TIMEOUT)
        add_node(nodes[3].address, nodes[0].address, created[0].id, timeout=TIMEOUT)
        added = add_node(proxy.address, nodes[0].address, timeout=TIMEOUT)
        assert added.role == "proxy"
        stub = NodeStubs.open(proxy.address)
        # A new node says ok once it has heard from a majority of the primaries.
        ready = stub
        wait_for(lambda: ready.state().cluster_ok or None, 10, "the proxy to see the cluster ok")
        yield Tier(
            factory,
            Cluster(factory, nodes),
            proxy,
            added.id,
            resp_port,
            stub,
            spare,
            doomed,
        )
    finally:
        if stub is not None:
            stub.close()
        factory.close()


def spread_keys(prefix: bytes, count: int) -> list[bytes]:
    """``count`` keys whose slots are spread evenly over all 16384."""
    return [key_in_slot(prefix, i * SLOT_COUNT // count, f"k{i}") for i in range(count)]


def in_waves(calls: list[Callable[[], Future[Any]]], wave: int = WAVE) -> list[Any]:
    """Run unary calls concurrently, ``wave`` at a time (a connection has a stream limit)."""
    results: list[Any] = []
    for i in range(0, len(calls), wave):
        futures = [call() for call in calls[i : i + wave]]
        results.extend(f.result() for f in futures)
    return results


def nodes_json(ctl: Ctl, address: str) -> dict[str, Any]:
    result = ctl("nodes", address, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


# ---- the proxy forwards every call ---------------------------------------------------------


def test_create_refuses_a_proxy_and_changes_nothing(tier: Tier) -> None:
    fresh = [tier.spare.address, tier.doomed.address]
    with pytest.raises(OperationError, match=r"is a proxy \(--proxy yes\).*nothing was changed"):
        create_cluster(fresh, timeout=TIMEOUT)
    for address in fresh:
        state = fetch_state(address, TIMEOUT)
        assert state.known_nodes == 1 and state.slots_assigned == 0


def test_a_plain_stub_writes_and_reads_back_keys_of_every_slot_range_through_the_proxy(
    tier: Tier, keys: Any
) -> None:
    cache = tier.stub.cache
    all_keys = spread_keys(keys(""), KEYS)
    values = [b"value-%d-" % i + key for i, key in enumerate(all_keys)]
    sets = [
        partial(cache.Set.future, cache_pb2.SetRequest(key=k, value=v), timeout=TIMEOUT)
        for k, v in zip(all_keys, values, strict=True)
    ]
    assert all(reply.applied for reply in in_waves(sets))
    # Read back in MGets of 100 keys (each split over the owners), then a tenth one by one.
    read = []
    for i in range(0, KEYS, 100):
        reply = cache.MGet(cache_pb2.MGetRequest(keys=all_keys[i : i + 100]), timeout=TIMEOUT)
        read.extend(r.value if r.found else None for r in reply.results)
    gets = [
        partial(cache.Get.future, cache_pb2.GetRequest(key=k), timeout=TIMEOUT)
        for k in all_keys[::10]
    ]
    assert [reply.value for reply in in_waves(gets)] == values[::10]
    wrong = [i for i, (got, want) in enumerate(zip(read, values, strict=True)) if got != want]
    assert not wrong, f"{len(wrong)} of {KEYS} keys read back wrong, first {wrong[:5]}"
    # The keys live on their owners: the proxy holds none, and each owner serves its own.
    assert tier.stub.keys_held() == 0
    owners = owners_by_slot(tier.stub.topology())
    for address in tier.cluster.addresses[:3]:
        owner = NodeStubs.open(address)
        try:
            sample = [k for k in all_keys if owners[key_slot(k)] == address][:20]
            assert sample and all(owner.get(k, REDIRECT) is not None for k in sample)
        finally:
            owner.close()


def test_pipeline_mset_and_mget_through_the_proxy(tier: Tier, keys: Any) -> None:
    cache = tier.stub.cache
    batch = spread_keys(keys("m"), 300)
    values = [b"mv-%d" % i for i in range(len(batch))]
    reply = cache.MSet(
        cache_pb2.MSetRequest(
            entries=[
                cache_pb2.SetRequest(key=k, value=v) for k, v in zip(batch, values, strict=True)
            ]
        ),
        timeout=TIMEOUT,
    )
    assert list(reply.applied) == [True] * len(batch)
    got = cache.MGet(cache_pb2.MGetRequest(keys=batch), timeout=TIMEOUT)
    assert [r.value for r in got.results] == values

    piped = spread_keys(keys("p"), 200)
    requests = [
        cache_pb2.PipelineRequest(
            ops=[
                cache_pb2.Operation(id=i, set=cache_pb2.SetRequest(key=k, value=b"p%d" % i))
                for i, k in enumerate(piped)
            ]
        ),
        cache_pb2.PipelineRequest(
            ops=[
                cache_pb2.Operation(id=1000 + i, get=cache_pb2.GetRequest(key=k))
                for i, k in enumerate(piped)
            ]
            + [cache_pb2.Operation(id=5000, mget=cache_pb2.MGetRequest(keys=batch[:50]))]
        ),
    ]
    replies = list(cache.Pipeline(iter(requests), timeout=TIMEOUT))
    assert [r.set.applied for r in replies[0].results] == [True] * len(piped)
    results = {r.id: r for r in replies[1].results}
    assert [results[1000 + i].get.value for i in range(len(piped))] == [
        b"p%d" % i for i in range(len(piped))
    ]
    assert [r.value for r in results[5000].mget.results] == values[:50]


def test_a_smart_client_gets_moved_from_the_proxy_and_never_maps_a_slot_to_it(
    tier: Tier, keys: Any
) -> None:
    key = keys("smart")
    failure = expect_failure(lambda: tier.stub.get(key, REDIRECT))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION and failure.reason == "MOVED"
    assert failure.metadata["address"] in tier.cluster.addresses[:3]
    topology = tier.stub.topology()
    proxy = next(n for n in topology.nodes if n.id == tier.proxy_id)
    assert proxy.role == cache_pb2.ROLE_PROXY and not proxy.slots
    assert tier.proxy.address not in set(owners_by_slot(topology))
    with sdk.client([tier.proxy.address], timeout=TIMEOUT) as client:
        client.set(key, b"through the sdk")
        assert client.get(key) == b"through the sdk"


def test_resp_through_the_proxy_forwards_and_cluster_slots_never_lists_it(
    tier: Tier, keys: Any
) -> None:
    # As the session's user when the suite runs with users (SLOTCACHE_TEST_ACL=1).
    token = security.current().token
    r = redis.Redis(
        host="127.0.0.1",
        port=tier.resp_port,
        socket_timeout=TIMEOUT,
        username="session" if token else None,
        password=token,
    )
    try:
        for i in range(20):
            key = keys(f"resp{i}")
            assert r.set(key, b"r%d" % i)
            assert r.get(key) == b"r%d" % i
        # Raw replies (a command name apart from its subcommand has no redis-py parser).
        rows = r.execute_command("CLUSTER", "SLOTS")
        listed = {bytes(node[2]).decode() for row in rows for node in row[2:]}
        assert sum(int(row[1]) - int(row[0]) + 1 for row in rows) == SLOT_COUNT
        assert listed and tier.proxy_id not in listed
        shards = r.execute_command("CLUSTER", "SHARDS")
        assert tier.proxy_id.encode() not in repr(shards).encode()
        text = bytes(r.execute_command("CLUSTER", "NODES")).decode()
        mine = next(line for line in text.splitlines() if line.startswith(tier.proxy_id))
        assert " myself,proxy " in mine and "master" not in mine
    finally:
        r.close()


# ---- the proxy owns nothing and is nobody's replica ---------------------------------------


def test_slots_and_replication_are_refused_to_the_proxy_with_a_clear_message(tier: Tier) -> None:
    admin = tier.stub.admin
    ranges = [cache_pb2.SlotRange(start=0, end=0)]
    refusals = [
        lambda: admin.AddSlots(admin_pb2.AddSlotsRequest(ranges=ranges), timeout=TIMEOUT),
        lambda: admin.ClaimSlots(admin_pb2.ClaimSlotsRequest(ranges=ranges), timeout=TIMEOUT),
    ]
    for call in refusals:
        failure = expect_failure(call)
        assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "is a proxy (--proxy yes): a proxy never owns slots" in failure.message
    primary_id = tier.stub.state().peers[0].node.id
    source = next(
        p.node.id for p in tier.stub.state().peers if p.node.slots and p.node.id != tier.proxy_id
    )
    failure = expect_failure(
        lambda: admin.ImportSlots(
            admin_pb2.ImportSlotsRequest(source_id=source, ranges=ranges), timeout=TIMEOUT
        )
    )
    assert "a proxy never owns slots" in failure.message
    failure = expect_failure(
        lambda: admin.Replicate(admin_pb2.ReplicateRequest(primary_id=primary_id), timeout=TIMEOUT)
    )
    assert "a proxy never replicates" in failure.message
    primary = NodeStubs.open(tier.cluster.addresses[1])
    try:
        failure = expect_failure(
            lambda: primary.admin.Replicate(
                admin_pb2.ReplicateRequest(primary_id=tier.proxy_id), timeout=TIMEOUT
            )
        )
        assert "is a proxy: it holds no data" in failure.message
    finally:
        primary.close()
    assert tier.stub.state().slots_assigned == SLOT_COUNT
    assert not any(p.node.slots for p in tier.stub.state().peers if p.node.id == tier.proxy_id)


def test_nodes_shows_the_proxy_and_check_passes(tier: Tier, ctl: Ctl) -> None:
    data = nodes_json(ctl, tier.seed)
    proxy = next(n for n in data["nodes"] if n["id"] == tier.proxy_id)
    assert proxy["role"] == "proxy" and proxy["slot_count"] == 0 and proxy["flags"] == ["proxy"]
    assert data["size"] == 3 and data["known_nodes"] == 5
    checked = ctl("check", tier.seed)
    assert checked.code == 0, checked.out + checked.err
    reshard = ctl("reshard", tier.seed, "--from", "all", "--to", tier.proxy_id, "--slots", "10")
    assert reshard.code != 0 and "is a proxy" in reshard.err


# ---- the cluster changes around it (in this order) ----------------------------------------


def test_rebalance_with_empty_primaries_leaves_the_proxy_without_slots(
    tier: Tier, ctl: Ctl, keys: Any
) -> None:
    written = spread_keys(keys("rb"), 200)
    tier.stub.cache.MSet(
        cache_pb2.MSetRequest(entries=[cache_pb2.SetRequest(key=k, value=k) for k in written]),
        timeout=TIMEOUT,
    )
    added = add_node(tier.spare.address, tier.seed, timeout=TIMEOUT)
    result = ctl(
        "rebalance", tier.seed, "--use-empty-primaries", "--yes", "--batch-slots", "4096", "--json"
    )
    assert result.code == 0, result.err
    data = nodes_json(ctl, tier.seed)
    counts = {n["id"]: n["slot_count"] for n in data["nodes"]}
    assert counts[tier.proxy_id] == 0
    assert counts[added.id] > 3000
    got = tier.stub.cache.MGet(cache_pb2.MGetRequest(keys=written), timeout=TIMEOUT)
    assert [r.value for r in got.results] == written


def test_a_killed_primary_is_replaced_by_its_replica_with_the_proxy_present(
    tier: Tier, keys: Any
) -> None:
    topology = tier.stub.topology()
    victim = tier.cluster.addresses[0]
    slots = slots_of(topology, victim)
    written = [key_in_slot(keys("fo"), s, "x") for s in slots[:: max(1, len(slots) // 50)]]
    for key in written:
        assert tier.stub.set(key, key)
    time.sleep(0.3)  # replication is asynchronous
    tier.cluster.kill(0)
    replica = tier.cluster.addresses[3]

    def promoted() -> bool | None:
        owners = owners_by_slot(tier.stub.topology())
        return all(owners[s] == replica for s in slots) or None

    wait_for(promoted, 15, "the replica to take the killed primary's slots")
    state = tier.stub.state()
    # Four slot-owning primaries (the rebalance added one); the proxy is not among them.
    assert state.size == 4
    assert all(tier.stub.get(key) == key for key in written)


def test_a_proxy_is_ready_for_clients_only_once_it_knows_the_slot_map(tier: Tier) -> None:
    # The proxy Deployment's readiness probe asks for the Cache service; liveness for "".
    with closing(NodeStubs.open(tier.doomed.address)) as alone:
        assert alone.health(CACHE) == "NOT_SERVING"  # not met yet: it could only refuse
        assert alone.health() == "SERVING"
    assert tier.stub.health(CACHE) == "SERVING"


def test_a_killed_proxy_is_forgotten_by_every_node_after_a_few_node_timeouts(
    tier: Tier, ctl: Ctl
) -> None:
    second = add_node(tier.doomed.address, tier.cluster.addresses[1], timeout=TIMEOUT)
    assert second.role == "proxy"
    with closing(NodeStubs.open(tier.doomed.address)) as joined:
        wait_for(lambda: joined.health(CACHE) == "SERVING" or None, 10, "the proxy to be ready")
    doomed_id = second.id
    tier.doomed.kill()
    killed = time.monotonic()
    for address in tier.cluster.addresses[1:]:

        def gone(address: str = address) -> bool | None:
            ids = {n["id"] for n in nodes_json(ctl, address)["nodes"]}
            return doomed_id not in ids or None

        wait_for(gone, 15, f"{address} to forget the killed proxy", interval=0.2)
    # FAIL after about node_timeout, then FORGET_AFTER_TIMEOUTS (4) more node timeouts.
    assert FORGET_AFTER_TIMEOUTS * 1.0 < time.monotonic() - killed < 12.0


def test_sigterm_makes_the_proxy_leave_every_view_at_once(tier: Tier, ctl: Ctl) -> None:
    live = [*tier.cluster.addresses[1:], tier.spare.address]
    tier.proxy.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    for address in live:

        def gone(address: str = address) -> bool | None:
            ids = {n["id"] for n in nodes_json(ctl, address)["nodes"]}
            return tier.proxy_id not in ids or None

        wait_for(gone, 5, f"{address} to forget the proxy")
    # Before failure detection could have removed it: that takes FAIL (about a node
    # timeout, 1000 ms) and then FORGET_AFTER_TIMEOUTS (4) more.
    assert time.monotonic() - sent < FORGET_AFTER_TIMEOUTS * 1.0
    assert tier.proxy.proc is not None and tier.proxy.proc.wait(10) == 0
