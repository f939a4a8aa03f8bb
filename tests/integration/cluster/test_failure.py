"""Failure detection, cluster-down behaviour and restarts, with real processes and SIGKILL.

Each test forms its own 3-primary cluster (node_timeout 1000 ms) because it
kills or restarts nodes.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import (
    REDIRECT,
    Nodes,
    comparable,
    expect_failure,
    key_in_slot,
    peer_flags,
    slots_of,
    wait_for,
)
from tests.support.processes import Cluster

NODE_TIMEOUT_MS = 1000
# The state machine probes a node every node_timeout/4 and runs its cron every 100 ms.
PROBE_MS = NODE_TIMEOUT_MS // 4
# Redis's bound: FAIL needs a majority of reports within 2 x node_timeout; allow
# a few gossip rounds on top for a probe to start and the reports to travel.
FAIL_BOUND_S = (2 * NODE_TIMEOUT_MS + 4 * PROBE_MS) / 1000
# A killed node stays down this long (from the kill), so that reconnect backoffs grow.
DOWNTIME_S = 18.0
# Once the restarted node serves, peers must see it within a few pings (resent
# every node_timeout/5) plus one capped reconnect; no 2 x node_timeout wait is
# due since the FAIL is older than that.
RECOVERY_BOUND_S = 2.5
# Peer channels retry a lost peer at least this often.
RECONNECT_BOUND_S = 2.0
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]

pytestmark = pytest.mark.slow


@pytest.fixture
def nodes_of():
    """``nodes_of(cluster)`` opens stubs for every node; all are closed at the end."""
    opened: list[Nodes] = []

    def open_(cluster: Cluster) -> Nodes:
        nodes = Nodes(cluster.addresses)
        opened.append(nodes)
        return nodes

    yield open_
    for nodes in opened:
        nodes.close()


def seed_keys(nodes: Nodes, keys, name: str) -> tuple[list[list[bytes]], dict[bytes, bytes]]:
    """Write three keys owned by each node; return them per owner and their values."""
    topology = nodes[0].topology()
    per_node = []
    for node in nodes:
        slots = slots_of(topology, node.address)
        per_node.append([key_in_slot(keys(""), slots[i * 1500], f"{name}{i}") for i in range(3)])
    values = {k: b"value-" + k for owned in per_node for k in owned}
    reply = nodes[0].cache.MSet(
        pb.MSetRequest(entries=[pb.SetRequest(key=k, value=v) for k, v in values.items()]),
        timeout=5,
    )
    assert all(reply.applied)
    return per_node, values


def read_all(node, values: dict[bytes, bytes]) -> list[bytes | None]:
    reply = node.cache.MGet(pb.MGetRequest(keys=list(values)), timeout=5)
    return [r.value if r.found else None for r in reply.results]


def watch_failure(nodes: Nodes, survivors: list[int], victim_id: str, started: float) -> dict:
    """Poll the survivors until each marks the victim FAIL and reports the cluster down."""
    seen: dict[tuple[int, str], float] = {}
    deadline = started + FAIL_BOUND_S + 5
    while time.monotonic() < deadline and len(seen) < 2 * len(survivors):
        for i in survivors:
            state = nodes[i].state()
            now = time.monotonic() - started
            if "fail" in peer_flags(state, victim_id):
                seen.setdefault((i, "fail"), now)
            if not state.cluster_ok:
                seen.setdefault((i, "down"), now)
        time.sleep(0.01)
    return seen


def test_killed_node_is_marked_fail_in_bound_and_recovers_when_restarted(
    servers, nodes_of, keys, report_figure
):
    cluster = Cluster.start(servers, 3, NODE_TIMEOUT_MS)
    nodes = nodes_of(cluster)
    per_node, values = seed_keys(nodes, keys, "k")
    victim_id = nodes[2].topology().responder_id

    started = time.monotonic()
    cluster.kill(2)
    # Until the failure is detected, requests forwarded to the dead owner fail cleanly.
    failure = expect_failure(
        lambda: nodes[0].cache.Get(pb.GetRequest(key=per_node[2][0]), timeout=5)
    )
    assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
    seen = watch_failure(nodes, [0, 1], victim_id, started)
    assert len(seen) == 4, f"not every survivor saw the failure: {seen}"
    detect = max(seen[(i, "fail")] for i in (0, 1))
    down = max(seen[(i, "down")] for i in (0, 1))
    report_figure(
        f"failure detection after SIGKILL (node_timeout {NODE_TIMEOUT_MS} ms): FAIL seen by "
        f"node0 {seen[(0, 'fail')] * 1000:.0f} ms, node1 {seen[(1, 'fail')] * 1000:.0f} ms; "
        f"cluster_ok false everywhere after {down * 1000:.0f} ms; "
        f"bound {FAIL_BOUND_S * 1000:.0f} ms"
    )
    assert detect <= FAIL_BOUND_S
    # Without replicas nothing can take the slots over: the cluster stays down.
    for node in nodes.nodes[:2]:
        topology = node.topology()
        assert not topology.cluster_ok
        assert [n.failing for n in topology.nodes if n.id == victim_id] == [True]

    # Every request is refused with CLUSTERDOWN, wherever its key lives.
    for node in nodes.nodes[:2]:
        for owned in per_node:
            key = owned[0]
            for call in (
                lambda n=node, k=key: n.cache.Get(pb.GetRequest(key=k), timeout=5),
                lambda n=node, k=key: n.cache.Set(pb.SetRequest(key=k, value=b"x"), timeout=5),
                lambda n=node, k=key: n.cache.MGet(pb.MGetRequest(keys=[k]), timeout=5),
            ):
                failure = expect_failure(call)
                assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
                assert failure.reason == "CLUSTERDOWN", failure
        reply = next(
            node.cache.Pipeline(
                iter(
                    [
                        pb.PipelineRequest(
                            ops=[
                                pb.Operation(id=i, get=pb.GetRequest(key=k))
                                for i, k in enumerate(owned[0] for owned in per_node)
                            ]
                        )
                    ]
                ),
                timeout=5,
            )
        )
        assert [r.id for r in reply.results] == [0, 1, 2]
        assert all(
            r.error.code == UNAVAILABLE and r.error.reason == "CLUSTERDOWN" for r in reply.results
        )

    # Stay down long enough for gRPC's default reconnect backoff towards the dead node
    # to grow to several seconds; the cluster must stay down, without flapping, meanwhile.
    while time.monotonic() - started < DOWNTIME_S:
        for node in nodes.nodes[:2]:
            state = node.state()
            assert not state.cluster_ok and "fail" in peer_flags(state, victim_id)
        time.sleep(0.25)

    # The node comes back with the same data directory: same id, same slots, FAIL lifted.
    before = nodes[0].topology()
    revived_at = time.monotonic()
    cluster.revive(2)
    ready = time.monotonic()
    nodes.reopen(2)  # the test's own channel must not add a reconnect backoff
    wait_for(
        lambda: all(n.topology().cluster_ok for n in nodes),
        RECOVERY_BOUND_S + 10,
        "the cluster to be ok again",
    )
    recovered = time.monotonic() - ready
    report_figure(
        f"a node killed and restarted after {DOWNTIME_S:.0f} s down (FAIL): cluster ok again on "
        f"every node {recovered * 1000:.0f} ms after it was serving (bound "
        f"{RECOVERY_BOUND_S * 1000:.0f} ms), {(time.monotonic() - revived_at) * 1000:.0f} ms "
        "after its process was started"
    )
    assert recovered <= RECOVERY_BOUND_S
    # Forwarding to it works at once as well: no reconnect backoff is left over from the
    # forwarded request that failed while it was down.
    ok_at = time.monotonic()
    wait_for(
        lambda: nodes[0].get(per_node[2][0]) is None, 10, "a read forwarded to the restarted node"
    )
    forward_delay = time.monotonic() - ok_at
    assert forward_delay <= RECONNECT_BOUND_S, f"forwarding resumed after {forward_delay:.1f}s"
    for node in nodes:
        for peer in node.state().peers:
            assert "fail" not in peer.flags and "pfail" not in peer.flags, (node.address, peer)
    assert nodes[2].topology().responder_id == victim_id
    after = [n.topology() for n in nodes]
    assert len({comparable(t) for t in after}) == 1
    for t in after:
        for address in (n.address for n in nodes):
            assert slots_of(t, address) == slots_of(before, address)
    # Keys on the survivors were never touched; the restarted node serves again.
    for node in nodes:
        got = read_all(node, values)
        assert got[:6] == [values[k] for owned in per_node[:2] for k in owned]
    assert nodes[2].set(per_node[2][0], b"again")
    assert nodes[0].get(per_node[2][0]) == b"again"


def test_reads_of_owned_slots_continue_when_down_if_allowed(servers, nodes_of, keys):
    cluster = Cluster.start(servers, 3, NODE_TIMEOUT_MS, "--allow-reads-when-down", "yes")
    nodes = nodes_of(cluster)
    per_node, values = seed_keys(nodes, keys, "r")
    victim_id = nodes[2].topology().responder_id
    cluster.kill(2)
    wait_for(
        lambda: (
            all("fail" in peer_flags(n.state(), victim_id) for n in nodes.nodes[:2])
            and not any(n.state().cluster_ok for n in nodes.nodes[:2])
        ),
        FAIL_BOUND_S + 5,
        "the survivors to mark the killed node FAIL",
    )
    node0, mine, theirs = nodes[0], per_node[0], per_node[1]
    # Reads of node0's own slots are served from node0.
    assert node0.get(mine[0]) == values[mine[0]]
    assert node0.get(mine[0], REDIRECT) == values[mine[0]]
    reply = node0.cache.MGet(pb.MGetRequest(keys=mine), timeout=5)
    assert [r.value for r in reply.results] == [values[k] for k in mine]
    assert node0.cache.Exists(pb.ExistsRequest(key=mine[1]), timeout=5).exists
    assert node0.cache.Ttl(pb.TtlRequest(key=mine[1]), timeout=5).found
    reply = next(
        node0.cache.Pipeline(
            iter(
                [
                    pb.PipelineRequest(
                        ops=[
                            pb.Operation(id=1, get=pb.GetRequest(key=mine[2])),
                            pb.Operation(id=2, set=pb.SetRequest(key=mine[2], value=b"no")),
                            pb.Operation(id=3, get=pb.GetRequest(key=theirs[0])),
                        ]
                    )
                ]
            ),
            timeout=5,
        )
    )
    assert reply.results[0].get.value == values[mine[2]]
    assert reply.results[1].error.reason == "CLUSTERDOWN"
    assert reply.results[2].error.reason == "CLUSTERDOWN"
    # Writes, and reads that would need another node, are still refused.
    for call in (
        lambda: node0.cache.Set(pb.SetRequest(key=mine[0], value=b"no"), timeout=5),
        lambda: node0.cache.Incr(pb.IncrRequest(key=mine[0], delta=1), timeout=5),
        lambda: node0.cache.Get(pb.GetRequest(key=theirs[0]), timeout=5),
        lambda: node0.cache.Get(pb.GetRequest(key=per_node[2][0]), timeout=5),
        lambda: node0.cache.MGet(pb.MGetRequest(keys=[mine[0], theirs[0]]), timeout=5),
        lambda: nodes[1].cache.Get(pb.GetRequest(key=mine[0]), timeout=5),
    ):
        failure = expect_failure(call)
        assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
        assert failure.reason == "CLUSTERDOWN", failure
    assert node0.get(mine[0]) == values[mine[0]]  # the refused writes changed nothing


def test_gracefully_restarted_node_rejoins_with_same_id_and_slots(
    servers, nodes_of, keys, report_figure
):
    cluster = Cluster.start(servers, 3, NODE_TIMEOUT_MS)
    nodes = nodes_of(cluster)
    per_node, values = seed_keys(nodes, keys, "g")
    before = nodes[0].topology()
    node_id = nodes[1].topology().responder_id
    saved = json.loads((cluster.nodes[1].data_dir / "nodes.json").read_text())
    assert saved["myself"] == node_id

    started = time.monotonic()
    cluster.restart(1)
    wait_for(
        lambda: (
            all(n.topology().cluster_ok for n in nodes)
            and len({comparable(n.topology()) for n in nodes}) == 1
        ),
        10,
        "the cluster to agree and be ok",
    )
    elapsed_ms = (time.monotonic() - started) * 1000
    report_figure(
        f"graceful restart of one node: cluster ok and agreed {elapsed_ms:.0f} ms after SIGTERM"
    )
    assert nodes[1].topology().responder_id == node_id
    after = nodes[2].topology()
    assert comparable(after)[0] == comparable(before)[0]  # same nodes, addresses, slots, epochs
    # Data on the other nodes is untouched, read through any node, the restarted one too.
    for node in nodes:
        got = read_all(node, values)
        assert got[:3] == [values[k] for k in per_node[0]]
        assert got[6:] == [values[k] for k in per_node[2]]
    # The restarted node serves its slots again, directly and through the others.
    assert nodes[0].set(per_node[1][0], b"after")
    assert nodes[1].get(per_node[1][0], REDIRECT) == b"after"


def test_node_restarted_after_losing_its_slots_learns_the_new_owner(servers, nodes_of, keys):
    """A primary that comes back with a stale view must not keep serving slots it lost."""
    cluster = Cluster.start(servers, 3, NODE_TIMEOUT_MS)
    nodes = nodes_of(cluster)
    per_node, _ = seed_keys(nodes, keys, "s")
    topology = nodes[0].topology()
    lost = slots_of(topology, cluster.addresses[0])
    victim_id = topology.responder_id
    cluster.kill(0)
    wait_for(
        lambda: all("fail" in peer_flags(n.state(), victim_id) for n in nodes.nodes[1:]),
        FAIL_BOUND_S + 5,
        "the survivors to mark the killed node FAIL",
    )
    # Take over every slot of the dead node (as a failover would), so the cluster is ok again.
    claim = nodes[1].admin.ClaimSlots(
        admin_pb2.ClaimSlotsRequest(ranges=[pb.SlotRange(start=lost[0], end=lost[-1])]),
        timeout=5,
    )
    wait_for(
        lambda: all(n.topology().cluster_ok for n in nodes.nodes[1:]),
        5,
        "the survivors to be ok with the slots taken over",
    )
    assert nodes[2].get(per_node[0][0]) is None  # the keys died with the node

    cluster.revive(0)

    def settled() -> bool:
        views = [n.topology() for n in nodes]
        return len({comparable(v) for v in views}) == 1 and all(v.cluster_ok for v in views)

    wait_for(settled, FAIL_BOUND_S + 5, "the restarted node to adopt the newer configuration")
    view = nodes[0].topology()
    assert view.responder_id == victim_id
    assert slots_of(view, cluster.addresses[0]) == []
    assert slots_of(view, cluster.addresses[1]) == sorted(
        lost + slots_of(topology, cluster.addresses[1])
    )
    assert max(n.config_epoch for n in view.nodes) == claim.config_epoch
    # Requests for the lost slots go to the new owner, also through the restarted node.
    failure = expect_failure(
        lambda: nodes[0].cache.Get(pb.GetRequest(key=per_node[0][0]), timeout=5, metadata=REDIRECT)
    )
    assert failure.reason == "MOVED"
    assert failure.metadata["address"] == cluster.addresses[1]
    assert nodes[0].set(per_node[0][0], b"new home")
    assert nodes[1].get(per_node[0][0], REDIRECT) == b"new home"
    # Having lost every slot, it follows the node that took them (as Redis 7 does)
    # and holds a copy of that node's data, not its own old keys.
    me = next(n for n in nodes[0].topology().nodes if n.id == victim_id)
    assert me.role == pb.ROLE_REPLICA
    assert me.primary_id == nodes[1].topology().responder_id
    wait_for(
        lambda: nodes[0].keys_held() == nodes[1].keys_held(),
        10,
        "the new replica to hold a copy of its primary",
    )
