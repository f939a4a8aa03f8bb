"""The pure replication logic of clusterctl: roles in views, id prefixes, in-sync verdicts, plans.

Lagging views and broken links last only moments on a real cluster, so they
are built by hand here and each verdict is asserted exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from slotcache.contract import split_slots
from slotcache.ctl import check, check_replication, views
from slotcache.ctl.cluster_ops import (
    CreatedNode,
    OperationError,
    plan_roles,
    views_agree,
)
from slotcache.ctl.replicas import resolve_primary, sync_problem, sync_summary
from slotcache.v1 import admin_pb2, cache_pb2

# Two shards: primaries P and Q, replicas R (of P) and S (of Q); U only in some tests.
P, Q, R, S, U = (prefix + "0" * 38 for prefix in ("1a", "1b", "2c", "3d", "4e"))
ADDR = {n: f"127.0.0.1:{7000 + i}" for i, n in enumerate((P, Q, R, S, U))}
HALVES = split_slots(2)
HEALTHY: dict[str, tuple[Sequence[tuple[int, int]], str]] = {
    P: ([HALVES[0]], ""),
    Q: ([HALVES[1]], ""),
    R: ([], P),
    S: ([], Q),
}

Layout = Mapping[str, tuple[Sequence[tuple[int, int]], str]]


def view(
    myself: str, layout: Layout = HEALTHY, flags: Mapping[str, list[str]] | None = None
) -> admin_pb2.ClusterStateReply:
    """``myself``'s ClusterState: each node with its slot ranges and the primary it follows."""
    reply = admin_pb2.ClusterStateReply(
        cluster_enabled=True,
        myself=myself,
        cluster_ok=True,
        known_nodes=len(layout),
        size=sum(1 for ranges, _ in layout.values() if ranges),
        slots_assigned=sum(e - s + 1 for ranges, _ in layout.values() for s, e in ranges),
    )
    for node_id, (ranges, primary) in layout.items():
        role = cache_pb2.ROLE_REPLICA if primary else cache_pb2.ROLE_PRIMARY
        reply.peers.append(
            admin_pb2.PeerState(
                node=cache_pb2.NodeInfo(
                    id=node_id,
                    address=ADDR[node_id],
                    role=role,
                    primary_id=primary,
                    slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in ranges],
                ),
                flags=(["myself"] if node_id == myself else [])
                + (["replica"] if primary else ["primary"])
                + (flags or {}).get(node_id, []),
            )
        )
    return reply


def info(role: str, **stats: int) -> admin_pb2.InfoReply:
    return admin_pb2.InfoReply(
        server={"role": role}, stats={k.replace("_", ".", 1): v for k, v in stats.items()}
    )


def in_sync_replica() -> admin_pb2.InfoReply:
    return info("replica", repl_syncing=0, repl_lag_ms=0, repl_lag_ops=0)


def primary_with(replicas: int, in_sync: int) -> admin_pb2.InfoReply:
    return info("primary", repl_replicas=replicas, repl_replicas_in_sync=in_sync)


def problems(states: Mapping[str, admin_pb2.ClusterStateReply | Exception]) -> list[str]:
    seed = view(P) if ADDR[P] not in states else states[ADDR[P]]
    assert isinstance(seed, admin_pb2.ClusterStateReply)
    return check.find_problems(ADDR[P], check.targets(ADDR[P], seed), states)


def all_views(layout: Layout = HEALTHY) -> dict[str, admin_pb2.ClusterStateReply | Exception]:
    return {ADDR[n]: view(n, layout) for n in layout}


LABELS = {ADDR[n]: f"{ADDR[n]} ({n[:8]})" for n in (P, Q, R, S)}


# ---- check: roles ---------------------------------------------------------------------------


def test_agreeing_roles_have_no_problems_or_warnings() -> None:
    states = all_views()
    assert problems(states) == []
    infos: dict[str, admin_pb2.InfoReply | Exception] = {
        ADDR[P]: primary_with(1, 1),
        ADDR[Q]: primary_with(1, 1),
        ADDR[R]: in_sync_replica(),
        ADDR[S]: in_sync_replica(),
    }
    assert check_replication.sync_warnings(LABELS, states, infos) == []
    data = check.report(check.targets(ADDR[P], view(P)), states, [], infos)
    by_address = {n["address"]: n for n in data["nodes"]}
    assert by_address[ADDR[R]]["role"] == "replica"
    assert by_address[ADDR[R]]["primary_id"] == P
    assert by_address[ADDR[R]]["replication"] == "in sync"
    assert by_address[ADDR[P]]["replication"] == "1/1 replicas in sync"
    assert check.check_rows(data)[2][3] == f"replica of {P[:8]}"


def test_a_replica_of_an_unknown_node_or_of_a_replica_is_a_problem() -> None:
    ghost = "f" * 40
    broken = {**HEALTHY, R: ([], ghost), S: ([], R)}
    found = check_replication.role_problems("X", view(P, broken), {})
    assert found == [
        f"X sees {R[:8]} as a replica of {ghost[:8]}, a node it does not know",
        f"X sees {S[:8]} as a replica of {R[:8]}, which is itself a replica",
    ]


def test_a_replica_without_a_primary_is_a_problem() -> None:
    reply = view(P)
    reply.peers[2].node.primary_id = ""
    assert check_replication.role_problems("X", reply, {}) == [
        f"X sees {R[:8]} as a replica of no node"
    ]


def test_a_lagging_view_after_a_failover_is_one_problem_per_node() -> None:
    # R took over from P; every view but the seed's (P's) already knows.
    after = {P: ([], R), Q: ([HALVES[1]], ""), R: ([HALVES[0]], ""), S: ([], Q)}
    states = {ADDR[n]: view(n, after) for n in (Q, R, S)}
    states[ADDR[P]] = view(P, HEALTHY)
    found = [p for p in problems(states) if p.startswith("the nodes disagree")]
    p_name, r_name = f"{ADDR[P]} ({P[:8]})", f"{ADDR[R]} ({R[:8]})"
    assert found == [
        f"the nodes disagree on the role of {p_name}: a primary for {ADDR[P]}; "
        f"a replica of {r_name} for {ADDR[Q]}, {ADDR[R]}, {ADDR[S]}",
        f"the nodes disagree on the role of {r_name}: a replica of {p_name} for {ADDR[P]}; "
        f"a primary for {ADDR[Q]}, {ADDR[R]}, {ADDR[S]}",
    ]


def test_create_waits_for_roles_too() -> None:
    lagging = view(Q, {**HEALTHY, R: ([], "")})
    assert views_agree([view(P), view(Q)], 4)
    assert not views_agree([view(P), lagging], 4)


# ---- check: replication warnings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("stats", "reason"),
    [
        ({"repl.syncing": 1, "repl.lag_ms": 0}, "a full sync from its primary is in progress"),
        ({"repl.syncing": 0, "repl.lag_ms": -1}, "it has not heard from its primary yet"),
        ({}, "it has not heard from its primary yet"),
        (
            {"repl.syncing": 0, "repl.lag_ms": 4000, "repl.lag_ops": 17},
            "it is 17 operations and 4000 ms behind its primary",
        ),
        ({"repl.syncing": 0, "repl.lag_ms": 20, "repl.lag_ops": 3}, None),
        ({"repl.syncing": 0, "repl.lag_ms": 0, "repl.lag_ops": 0}, None),
    ],
)
def test_sync_problem(stats: dict[str, int], reason: str | None) -> None:
    assert sync_problem(stats) == reason


def test_replicas_out_of_sync_are_warnings_not_problems() -> None:
    states = all_views()
    infos: dict[str, admin_pb2.InfoReply | Exception] = {
        ADDR[P]: primary_with(1, 0),  # explained by R's own warning
        ADDR[Q]: primary_with(0, 0),  # S believes it is fine, but Q has no link to it
        ADDR[R]: info("replica", repl_syncing=1, repl_lag_ms=5),
        ADDR[S]: in_sync_replica(),
    }
    warnings = check_replication.sync_warnings(LABELS, states, infos)
    assert warnings == [
        f"replica {LABELS[ADDR[R]]} is not in sync: a full sync from its primary is in progress",
        f"primary {LABELS[ADDR[Q]]} has 1 replica but only 0 connected and in sync",
    ]
    data = check.report(check.targets(ADDR[P], view(P)), states, [], infos, warnings)
    assert data["ok"] is True
    assert data["warnings"] == warnings
    assert [n["replication"] for n in data["nodes"]] == [
        "0/1 replicas in sync",
        "no replicas",
        "syncing",
        "in sync",
    ]


def test_unreachable_nodes_get_no_warnings() -> None:
    states = all_views()
    states[ADDR[R]] = OperationError("down")
    infos: dict[str, admin_pb2.InfoReply | Exception] = {ADDR[P]: primary_with(1, 1)}
    assert check_replication.sync_warnings(LABELS, states, infos) == []
    assert sync_summary(info("replica", repl_lag_ms=5000, repl_lag_ops=1)) == "NOT in sync"


# ---- add-node: which primary --replica-of means ---------------------------------------------


@pytest.mark.parametrize("wanted", [P, P[:2], P[:2].upper(), P[:10]])
def test_resolve_primary_by_id_or_unique_prefix(wanted: str) -> None:
    assert resolve_primary(view(Q), wanted, ADDR[Q]).node.id == P


@pytest.mark.parametrize(
    ("wanted", "flags", "message"),
    [
        ("1", None, f"1 matches 2 nodes ({ADDR[P]} ({P[:8]}), {ADDR[Q]} ({Q[:8]})); give more"),
        (
            "9",
            None,
            f"no node of the cluster has an id starting with 9 (see clusterctl nodes {ADDR[Q]})",
        ),
        ("2c", None, f"{ADDR[R]} ({R[:8]}) is a replica (of {P[:8]}), not a primary"),
        ("1a", {P: ["fail"]}, "is marked as failed"),
    ],
)
def test_resolve_primary_refusals(
    wanted: str, flags: dict[str, list[str]] | None, message: str
) -> None:
    with pytest.raises(OperationError, match="nothing was changed") as err:
        resolve_primary(view(Q, flags=flags), wanted, ADDR[Q])
    assert message in str(err.value)


# ---- create: plans and what it reports --------------------------------------------------------


def test_plan_roles_round_robin() -> None:
    assert plan_roles(6, 1) == (3, [0, 1, 2])
    assert plan_roles(6, 2) == (2, [0, 1, 0, 1])
    assert plan_roles(3, 0) == (3, [])


@pytest.mark.parametrize(("count", "replicas"), [(3, 1), (2, 2), (1, 1), (5, 2)])
def test_plan_roles_needs_a_multiple(count: int, replicas: int) -> None:
    with pytest.raises(OperationError, match=f"give a multiple of {replicas + 1} nodes"):
        plan_roles(count, replicas)


def test_created_entries_name_each_replicas_primary() -> None:
    created = [
        CreatedNode(ADDR[P], P, HALVES[0], None),
        CreatedNode(ADDR[Q], Q, HALVES[1], None),
        CreatedNode(ADDR[R], R, None, P),
    ]
    entries = views.created_entries(created)
    assert entries[2] == {
        "address": ADDR[R],
        "id": R,
        "role": "replica",
        "primary_id": P,
        "primary_address": ADDR[P],
        "slots": [],
        "slot_count": 0,
    }
    assert entries[0]["slot_count"] == 8192
    rows = views.created_rows(entries)
    assert rows[2] == [ADDR[R], R[:8], f"replica of {ADDR[P]}", "-", 0]


# ---- nodes: each shard together ---------------------------------------------------------------


def test_nodes_view_lists_each_primary_with_its_replicas() -> None:
    layout: Layout = {
        S: ([], Q),
        R: ([], P),
        Q: ([HALVES[1]], ""),
        P: ([HALVES[0]], ""),
        U: ([], "f" * 40),  # its primary is unknown here: listed last
    }
    data = views.nodes_view(ADDR[S], view(S, layout))
    assert [n["id"] for n in data["nodes"]] == [P, R, Q, S, U]
    assert data["nodes"][1]["primary_address"] == ADDR[P]
    assert data["nodes"][4]["primary_address"] is None
    rows = views.node_rows(data)
    assert rows[1][2] == f"replica of {P[:8]}"
    assert rows[0][2] == "primary"
