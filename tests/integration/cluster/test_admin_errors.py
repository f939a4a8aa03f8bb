"""Bad operator input gets a clear error and leaves no partial state behind."""

from __future__ import annotations

import time

import grpc
import pytest

from slotcache.ctl.cluster_ops import OperationError, create_cluster
from slotcache.ctl.launcher import free_port
from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import (
    SLOTS,
    NodeStubs,
    comparable,
    expect_failure,
    owners_by_slot,
    slots_of,
)

# Long enough for a wrongly added node to show up in gossip.
SETTLE_S = 0.6


def snapshot(nodes) -> list[tuple[object, ...]]:
    """Everything an operator command could change, on every node."""
    out = []
    for node in nodes:
        state = node.state()
        out.append(
            (
                comparable(node.topology()),
                state.current_epoch,
                state.known_nodes,
                state.slots_assigned,
                tuple(sorted(p.node.id for p in state.peers)),
                tuple(sorted((p.node.id, p.bus_address) for p in state.peers)),
            )
        )
    return out


def ranges(*pairs: tuple[int, int]) -> list[pb.SlotRange]:
    return [pb.SlotRange(start=s, end=e) for s, e in pairs]


@pytest.fixture
def unchanged(nodes3):
    """Asserts, after the test, that no node's view changed (checked twice, across gossip)."""
    before = snapshot(nodes3)
    yield
    assert snapshot(nodes3) == before
    time.sleep(SETTLE_S)
    assert snapshot(nodes3) == before


# ---- Meet ----------------------------------------------------------------------------


def test_meet_unreachable_address_is_unavailable_and_adds_nothing(nodes3, unchanged):
    node = nodes3[0]
    for host, port in (("127.0.0.1", free_port()), ("192.0.2.1", 16379)):
        started = time.monotonic()
        failure = expect_failure(
            lambda h=host, p=port: node.admin.Meet(
                admin_pb2.MeetRequest(host=h, bus_port=p), timeout=10
            )
        )
        assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
        assert f"{host}:{port}" in failure.message, failure.message
        assert time.monotonic() - started < 5  # fails fast, does not hang the operator
        assert node.state().known_nodes == 3


def test_meet_something_that_is_not_a_bus_is_refused(cluster3, nodes3, unchanged):
    node = nodes3[0]
    # A client port speaks gRPC but has no Bus service.
    host, _, port = cluster3.addresses[1].rpartition(":")
    failure = expect_failure(
        lambda: node.admin.Meet(admin_pb2.MeetRequest(host=host, bus_port=int(port)), timeout=10)
    )
    assert failure.code == grpc.StatusCode.UNAVAILABLE, failure


def test_meet_bad_arguments_and_itself(cluster3, nodes3, unchanged):
    node = nodes3[0]
    for request in (
        admin_pb2.MeetRequest(host="", bus_port=7000),
        admin_pb2.MeetRequest(host="127.0.0.1", bus_port=0),
        admin_pb2.MeetRequest(host="127.0.0.1", bus_port=70000),
    ):
        failure = expect_failure(lambda r=request: node.admin.Meet(r, timeout=5))
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, (request, failure)
    own_bus = cluster3.nodes[0].bus_address.rpartition(":")
    failure = expect_failure(
        lambda: node.admin.Meet(
            admin_pb2.MeetRequest(host=own_bus[0], bus_port=int(own_bus[2])), timeout=5
        )
    )
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, failure


def test_meet_a_known_node_again_changes_nothing(cluster3, nodes3, unchanged):
    host, _, port = cluster3.nodes[2].bus_address.rpartition(":")
    reply = nodes3[0].admin.Meet(admin_pb2.MeetRequest(host=host, bus_port=int(port)), timeout=5)
    assert reply.node_id == nodes3[2].topology().responder_id


# ---- AddSlots / ClaimSlots ------------------------------------------------------------


@pytest.mark.parametrize("method", ["AddSlots", "ClaimSlots"])
def test_slot_outside_the_range_is_invalid_and_changes_nothing(nodes3, method, unchanged):
    node = nodes3[1]
    request_type = getattr(admin_pb2, f"{method}Request")
    own = slots_of(node.topology(), node.address)[0]
    for bad in (
        ranges((SLOTS, SLOTS)),
        ranges((SLOTS - 10, SLOTS + 10)),
        ranges((own, own), (2**32 - 1, 2**32 - 1)),  # a valid range first: still nothing
        ranges((10, 5)),
        [],
    ):
        failure = expect_failure(
            lambda b=bad: getattr(node.admin, method)(request_type(ranges=b), timeout=5)
        )
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, (bad, failure)
        assert failure.message


def test_add_slots_owned_by_another_node_is_refused(cluster3, nodes3, unchanged):
    node = nodes3[0]
    owners = owners_by_slot(node.topology())
    own = owners.index(node.address)
    taken = owners.index(cluster3.addresses[2])
    for bad in (ranges((taken, taken)), ranges((own, own), (taken, taken + 5))):
        failure = expect_failure(
            lambda b=bad: node.admin.AddSlots(admin_pb2.AddSlotsRequest(ranges=b), timeout=5)
        )
        assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, failure
        assert str(taken) in failure.message


def test_set_config_epoch_on_a_cluster_member_is_refused(nodes3, unchanged):
    for epoch in (0, 99):
        failure = expect_failure(
            lambda e=epoch: nodes3[0].admin.SetConfigEpoch(
                admin_pb2.SetConfigEpochRequest(config_epoch=e), timeout=5
            )
        )
        assert failure.code in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT,
        ), failure


# ---- create_cluster --------------------------------------------------------------------


def fresh_state(node: NodeStubs) -> tuple[object, ...]:
    state = node.state()
    me = next(p for p in state.peers if p.node.id == state.myself)
    return (
        state.known_nodes,
        state.slots_assigned,
        state.current_epoch,
        me.node.config_epoch,
        state.cluster_ok,
    )


def test_create_cluster_over_cluster_members_changes_nothing(cluster3, nodes3, servers, unchanged):
    with pytest.raises(OperationError, match="already belongs to a cluster"):
        create_cluster(cluster3.addresses, timeout=2, wait_s=5)

    # A fresh node listed first must not be touched either: everything is checked first.
    fresh = servers.start(cluster=True)
    stubs = NodeStubs.open(fresh.address)
    try:
        assert fresh_state(stubs) == (1, 0, 0, 0, False)
        with pytest.raises(OperationError, match="already belongs to a cluster"):
            create_cluster([fresh.address, cluster3.addresses[1]], timeout=2, wait_s=5)
        time.sleep(SETTLE_S)
        assert fresh_state(stubs) == (1, 0, 0, 0, False)
        # The fresh node can still form a cluster of its own afterwards.
        create_cluster([fresh.address], timeout=2, wait_s=10)
        assert stubs.state().cluster_ok
    finally:
        stubs.close()


def test_create_cluster_with_a_standalone_node_changes_nothing(servers):
    fresh = [servers.start(cluster=True) for _ in range(2)]
    standalone = servers.start()
    stubs = [NodeStubs.open(s.address) for s in fresh]
    try:
        with pytest.raises(OperationError, match="not in cluster mode"):
            create_cluster([fresh[0].address, fresh[1].address, standalone.address], timeout=2)
        time.sleep(SETTLE_S)
        for node in stubs:
            assert fresh_state(node) == (1, 0, 0, 0, False)
    finally:
        for node in stubs:
            node.close()


# ---- standalone nodes ------------------------------------------------------------------


def test_cluster_admin_rpcs_on_a_standalone_node_fail_precondition(servers):
    server = servers.start()
    node = NodeStubs.open(server.address)
    try:
        calls = {
            "Meet": admin_pb2.MeetRequest(host="127.0.0.1", bus_port=free_port()),
            "AddSlots": admin_pb2.AddSlotsRequest(ranges=ranges((0, 10))),
            "ClaimSlots": admin_pb2.ClaimSlotsRequest(ranges=ranges((0, 10))),
            "SetConfigEpoch": admin_pb2.SetConfigEpochRequest(config_epoch=1),
        }
        for method, request in calls.items():
            failure = expect_failure(
                lambda m=method, r=request: getattr(node.admin, m)(r, timeout=5)
            )
            assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, (method, failure)
            assert "cluster" in failure.message, failure.message
        state = node.state()
        assert not state.cluster_enabled
        assert state.known_nodes == 1 and state.slots_assigned == SLOTS
        # The standalone node still serves every slot, redirect metadata or not.
        topology = node.topology()
        assert owners_by_slot(topology) == [server.address] * SLOTS
        assert node.set(b"{a}k", b"v", (("slotcache-redirect", "1"),))
        assert node.get(b"{a}k") == b"v"
    finally:
        node.close()
