"""clusterctl and the SDK with a proxy in the view: never picked, always shown as a proxy.

Views are built by hand: three primaries owning thirds, an empty primary,
a replica and a proxy, all agreeing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from slotcache._slotmap import SlotMap
from slotcache.contract import split_slots
from slotcache.ctl import check, views
from slotcache.ctl.check_replication import role_problems
from slotcache.ctl.fix import _live_primaries
from slotcache.ctl.rebalance_plan import plan_rebalance
from slotcache.ctl.replicas import resolve_primary
from slotcache.ctl.resharding import ClusterView, primaries_of
from slotcache.ctl.resharding import resolve_primary as resolve_reshard_target
from slotcache.ctl.roles import is_primary, is_proxy, is_replica
from slotcache.ctl.rpc import OperationError
from slotcache.v1 import admin_pb2, cache_pb2

A, B, C, EMPTY, REPLICA, PROXY = (c * 40 for c in "abcdef")
ADDR = {n: f"127.0.0.1:{7000 + i}" for i, n in enumerate((A, B, C, EMPTY, REPLICA, PROXY))}
THIRDS = dict(zip((A, B, C), split_slots(3), strict=True))
ROLES = {REPLICA: cache_pb2.ROLE_REPLICA, PROXY: cache_pb2.ROLE_PROXY}
FLAGS = {REPLICA: "replica", PROXY: "proxy"}


def node(node_id: str, ranges: Sequence[tuple[int, int]] = ()) -> cache_pb2.NodeInfo:
    return cache_pb2.NodeInfo(
        id=node_id,
        address=ADDR[node_id],
        role=ROLES.get(node_id, cache_pb2.ROLE_PRIMARY),
        primary_id=A if node_id == REPLICA else "",
        slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in ranges],
        config_epoch=1 if ranges else 0,
    )


def state(myself: str = A) -> admin_pb2.ClusterStateReply:
    """``myself``'s view: every node of ADDR, all healthy and agreeing."""
    reply = admin_pb2.ClusterStateReply(cluster_enabled=True, myself=myself, cluster_ok=True)
    for node_id in ADDR:
        ranges = [THIRDS[node_id]] if node_id in THIRDS else []
        reply.peers.append(
            admin_pb2.PeerState(
                node=node(node_id, ranges),
                flags=(["myself"] if node_id == myself else []) + [FLAGS.get(node_id, "primary")],
                bus_address=ADDR[node_id].replace(":70", ":170"),
            )
        )
    return reply


def peer(node_id: str) -> admin_pb2.PeerState:
    return next(p for p in state().peers if p.node.id == node_id)


def test_roles_are_exclusive():
    assert [is_primary(peer(n)) for n in (A, EMPTY, REPLICA, PROXY)] == [True, True, False, False]
    assert is_proxy(peer(PROXY)) and not is_replica(peer(PROXY))


def test_rebalance_with_empty_primaries_never_gives_a_proxy_slots():
    primaries = primaries_of(state())
    assert [p.node.id for p in primaries] == [A, B, C, EMPTY]
    view = ClusterView(ADDR[A], state(), dict(ADDR), primaries)
    plan = plan_rebalance(view.loads(), use_empty=True)
    assert plan.moves, "the empty primary should get slots"
    assert {m.target for m in plan.moves} == {EMPTY}
    assert PROXY not in {m.source for m in plan.moves}


def test_fix_never_counts_a_proxy_as_a_live_primary():
    seed = state()
    answering = {ADDR[n]: state(n) for n in ADDR}
    assert set(_live_primaries(seed, answering)) == {A, B, C, EMPTY}


def test_a_proxy_is_refused_as_a_primary_to_follow_or_to_reshard_to():
    with pytest.raises(OperationError, match=r"is a proxy: it owns no slots.*nothing was changed"):
        resolve_primary(state(), PROXY[:8], ADDR[A])
    view = ClusterView(ADDR[A], state(), dict(ADDR), primaries_of(state()))
    with pytest.raises(OperationError, match="is a proxy"):
        resolve_reshard_target(view, PROXY[:8], "the target")
    assert resolve_reshard_target(view, EMPTY[:8], "the target") == EMPTY


def test_nodes_shows_the_proxy_as_a_proxy_after_the_shards():
    data = views.nodes_view(ADDR[A], state())
    roles = [(n["id"], n["role"]) for n in data["nodes"]]
    assert roles[-1] == (PROXY, "proxy")
    row = views.node_rows(data)[-1]
    assert row[2] == "proxy" and row[6] == 0


def test_check_finds_nothing_wrong_with_a_slotless_proxy():
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {ADDR[n]: state(n) for n in ADDR}
    expected = check.targets(ADDR[A], state())
    assert check.find_problems(ADDR[A], expected, states) == []


def test_a_replica_of_a_proxy_is_a_problem():
    reply = state()
    replica = next(p for p in reply.peers if p.node.id == REPLICA)
    replica.node.primary_id = PROXY
    names = {n: n[:8] for n in ADDR}
    assert role_problems("X", reply, names) == [
        f"X sees {REPLICA[:8]} as a replica of {PROXY[:8]}, which is a proxy"
    ]


def test_the_sdk_never_routes_to_a_proxy():
    topology = cache_pb2.TopologyReply(epoch=3, cluster_ok=True, responder_id=PROXY)
    topology.nodes.extend(p.node for p in state().peers)
    slot_map = SlotMap.from_topology(topology, ADDR[PROXY])
    owners = {slot_map.owner(s) for s in range(16384)}
    assert owners == {ADDR[A], ADDR[B], ADDR[C]}
    described = {n.id: n for n in slot_map.nodes}
    assert not described[PROXY].primary
    assert slot_map.replicas_of(ADDR[A]) == (ADDR[REPLICA],)
    assert ADDR[PROXY] not in {a for r in slot_map.replicas.values() for a in r}
