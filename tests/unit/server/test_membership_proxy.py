"""Proxies in one node's membership: they never own slots, never vote and never count.

Each test builds one node's view by hand (no network, no clock) and feeds it
the messages or commands a proxy would cause.
"""

from __future__ import annotations

import random

import pytest

from slotcache_server.cluster_runtime import take_role
from slotcache_server.membership.commands import ClusterError
from slotcache_server.membership.machine import Membership, Remembered
from slotcache_server.membership.messages import AUTH_ACK, AUTH_REQUEST, LEAVE, MEET, PING, REPORT
from slotcache_server.membership.model import (
    FAIL,
    PFAIL,
    PRIMARY,
    PROXY,
    REPLICA,
    Address,
    MembershipConfig,
    Peer,
    flag_names,
)
from slotcache_server.membership.proxies import FORGET_AFTER_TIMEOUTS
from slotcache_server.membership.snapshot import restore, snapshot
from slotcache_server.membership.step import Turn
from slotcache_server.wire import bus_pb2

NT = 1_000
CONFIG = MembershipConfig(node_timeout_ms=NT)
ME, A, B, Q, V = (bytes([i]) * 20 for i in range(1, 6))


def address(node_id: bytes) -> Address:
    return Address(f"10.0.0.{node_id[0]}", 7000, 17000)


def view(*, my_flags: int = PRIMARY, my_slots: range = range(0, 4000)) -> Membership:
    """This node and primaries A, B and V with slots, plus the proxy Q; all at distinct epochs."""
    peers = (
        Peer(id=A, address=address(A), config_epoch=2),
        Peer(id=B, address=address(B), config_epoch=3),
        Peer(id=V, address=address(V), config_epoch=4),
        Peer(id=Q, address=address(Q), flags=PROXY),
    )
    slots = {A: range(4000, 8000), B: range(8000, 12000), V: range(12000, 16384)}
    if my_slots:
        slots[ME] = my_slots
    me = Peer(id=ME, address=address(ME), flags=my_flags, config_epoch=1)
    remembered = Remembered(current_epoch=4, peers=peers, slots=slots)
    m = Membership(CONFIG, me, 0, random=random.Random(7), remembered=remembered)
    m.tick(10)
    return m


def message(kind: int, sender: bytes, flags: int, failing: bytes = b"") -> bus_pb2.BusMessage:
    msg = bus_pb2.BusMessage(type=kind, failing=failing)
    header = msg.header
    header.sender = sender
    header.flags = flags
    header.current_epoch = 4
    header.address.CopyFrom(address(sender).to_proto())
    return msg


# ---- who counts ------------------------------------------------------------------------


def test_the_electorate_is_the_slot_owning_primaries_and_never_a_proxy():
    m = view()
    assert m.size == 4
    proxy = m.nodes[Q]
    assert not m.view.is_voter(proxy)
    # Even slots paired with the proxy's id (a bug elsewhere) do not make it a voter.
    m.view.slots.assign(100, Q)
    assert not m.view.is_voter(proxy)
    m.state.update(20, Turn(20))
    assert m.size == 4


def test_a_proxys_failure_report_does_not_count_towards_fail():
    m = view()
    m.view.slots.assign(100, Q)  # even paired with slots, a proxy reports nothing that counts
    m.receive(message(REPORT, Q, PROXY, failing=V), 20)
    assert Q not in m.nodes[V].fail_reports
    m.receive(message(REPORT, A, PRIMARY, failing=V), 20)
    assert A in m.nodes[V].fail_reports


def test_fail_needs_a_majority_of_primaries_whatever_the_proxies_say():
    """Four voters: this node and A report V, 2 of 4, so no FAIL; B's report makes 3 of 4."""
    m = view()
    victim = m.nodes[V]
    victim.ping_sent = victim.ping_attempt = 20
    m.detector.schedule(victim, 20)
    m.tick(20 + NT + 1)
    assert victim.flags & PFAIL
    m.receive(message(REPORT, A, PRIMARY, failing=V), 20 + NT + 2)
    m.receive(message(REPORT, Q, PROXY, failing=V), 20 + NT + 3)
    # A stale entry keyed by the proxy (as an older version could record) is dropped too.
    victim.fail_reports[Q] = 20 + NT + 3
    m.receive(message(REPORT, A, PRIMARY, failing=V), 20 + NT + 4)
    assert not victim.flags & FAIL
    assert Q not in victim.fail_reports
    m.receive(message(REPORT, B, PRIMARY, failing=V), 20 + NT + 5)
    assert victim.flags & FAIL


def test_a_proxy_never_votes_in_an_election():
    m = view(my_flags=PROXY, my_slots=range(0))
    m.nodes[V].flags |= FAIL
    request = message(AUTH_REQUEST, A, REPLICA)
    request.header.primary = V
    request.header.current_epoch = 5
    request.header.config_epoch = 4
    request.header.slots.extend([12000, 16383])
    step = m.receive(request, 30)
    assert not [e for e in step.messages if e.message.type == AUTH_ACK]
    assert m.elections.last_refusal == "not a slot-owning primary"


def test_a_vote_from_a_proxy_is_not_counted():
    m = view(my_flags=REPLICA, my_slots=range(0))
    m.myself.primary_id = V
    m.elections.auth_sent = True
    m.elections.auth_epoch = 5
    m.elections.auth_time = 30
    m.view.slots.assign(100, Q)
    header = bus_pb2.Header(sender=Q, flags=PROXY, current_epoch=5)
    m.elections.on_auth_ack(m.nodes[Q], header, Turn(40))
    assert Q not in m.elections.votes


# ---- what a proxy may not do ------------------------------------------------------------


def test_slots_are_refused_to_a_proxy_with_a_clear_message():
    m = view(my_flags=PROXY, my_slots=range(0))
    for command in (lambda: m.add_slots([16000]), lambda: m.claim_slots([0], 30)):
        with pytest.raises(ClusterError, match=r"is a proxy .* never owns slots"):
            command()
    assert m.slots.count(ME) == 0


def test_a_claim_for_a_proxy_is_refused():
    m = view()
    with pytest.raises(ClusterError, match="is a proxy"):
        m.apply_claim(Q, 9, [0], 30)
    assert m.slots.owner(0) == ME


def test_a_proxy_neither_replicates_nor_is_replicated():
    proxy = view(my_flags=PROXY, my_slots=range(0))
    with pytest.raises(ClusterError, match="a proxy never replicates"):
        proxy.replicate(A, 30)
    empty = view(my_slots=range(0))
    with pytest.raises(ClusterError, match="is a proxy: it holds no data"):
        empty.replicate(Q, 30)
    assert not proxy.myself.primary_id and not empty.myself.primary_id


def test_an_update_cannot_give_a_proxy_slots():
    m = view()
    update = message(bus_pb2.MESSAGE_TYPE_UPDATE, A, PRIMARY)
    update.update.CopyFrom(bus_pb2.NodeConfig(node=Q, config_epoch=99, slots=[0, 3999]))
    m.receive(update, 30)
    assert m.slots.count(Q) == 0 and m.slots.owner(0) == ME


# ---- the flag travels -------------------------------------------------------------------


def test_the_proxy_flag_is_taken_from_the_header_and_from_gossip():
    m = view()
    newcomer = b"\x09" * 20
    ping = message(PING, A, PRIMARY)
    ping.gossip.add(node=newcomer, address=address(newcomer).to_proto(), flags=PROXY)
    m.receive(ping, 30)
    assert m.nodes[newcomer].is_proxy and not m.nodes[newcomer].is_primary
    met = message(MEET, b"\x0a" * 20, PROXY)
    m.receive(met, 31)
    assert m.nodes[b"\x0a" * 20].is_proxy
    assert flag_names(m.nodes[Q].flags) == ["proxy"]


def test_a_proxy_probes_with_meet_so_a_cluster_that_forgot_it_takes_it_back():
    m = view(my_flags=PROXY, my_slots=range(0))
    step = m.announce(40)
    assert step.messages and all(e.message.type == MEET for e in step.messages)
    assert all(e.message.header.flags == PROXY for e in step.messages)


def test_the_node_file_keeps_the_proxy_role():
    m = view(my_flags=PROXY, my_slots=range(0))
    again = restore(snapshot(m), CONFIG, address(ME), 50)
    assert again.myself.is_proxy and again.nodes[Q].is_proxy


def test_a_node_that_owns_slots_cannot_restart_as_a_proxy():
    m = view()
    with pytest.raises(ClusterError, match="owns 4000 slots"):
        take_role(m, proxy=True)
    assert m.myself.is_primary
    empty = view(my_slots=range(0))
    take_role(empty, proxy=True)
    assert empty.myself.flags == PROXY
    take_role(empty, proxy=False)
    assert empty.myself.flags == PRIMARY


# ---- leaving ----------------------------------------------------------------------------


def test_a_leave_from_a_proxy_forgets_it_and_one_from_a_primary_is_ignored():
    m = view()
    m.receive(message(LEAVE, A, PRIMARY), 30)
    assert A in m.nodes
    m.receive(message(LEAVE, Q, PROXY), 31)
    assert Q not in m.nodes
    # Gossip from a node that has not heard yet does not bring it back.
    ping = message(PING, A, PRIMARY)
    ping.gossip.add(node=Q, address=address(Q).to_proto(), flags=PROXY)
    m.receive(ping, 32)
    assert Q not in m.nodes


def test_only_a_proxy_sends_leave_and_it_goes_to_every_node():
    with pytest.raises(ClusterError):
        view().leave(30)
    step = view(my_flags=PROXY, my_slots=range(0)).leave(30)
    assert sorted(e.node for e in step.messages) == [A, B, Q, V]
    assert {e.message.type for e in step.messages} == {LEAVE}


def test_a_proxy_failed_for_longer_than_the_bound_is_forgotten():
    m = view()
    proxy, primary = m.nodes[Q], m.nodes[V]
    for node in (proxy, primary):
        node.flags |= FAIL
        node.fail_time = 100
    bound = FORGET_AFTER_TIMEOUTS * NT
    m.tick(100 + bound)
    assert Q in m.nodes
    m.tick(100 + bound + 1)
    assert Q not in m.nodes
    assert V in m.nodes, "a failed primary is never forgotten automatically"
