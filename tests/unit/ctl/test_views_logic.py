"""The pure parts of clusterctl: views, check's verdicts, port plans, connect instructions.

Disagreeing views only last a moment on a real cluster, so they are built by
hand here and every kind of problem is asserted exactly.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

import pytest

from slotcache.contract import split_slots
from slotcache.ctl import check, local, views
from slotcache.ctl.cluster_ops import OperationError
from slotcache.ctl.connect_info import connect_info, down_command
from slotcache.v1 import admin_pb2, cache_pb2

A, B, C = "a" * 40, "b" * 40, "c" * 40
ADDR = {A: "127.0.0.1:7000", B: "127.0.0.1:7001", C: "127.0.0.1:7002"}
THIRDS = dict(zip((A, B, C), split_slots(3), strict=True))


def state(
    myself: str,
    owners: dict[str, Sequence[tuple[int, int]]],
    *,
    ok: bool = True,
    flags: dict[str, list[str]] | None = None,
) -> admin_pb2.ClusterStateReply:
    """A ClusterState reply from ``myself``, whose view holds ``owners``' nodes and slots."""
    reply = admin_pb2.ClusterStateReply(
        cluster_enabled=True,
        myself=myself,
        cluster_ok=ok,
        current_epoch=3,
        known_nodes=len(owners),
        size=sum(1 for r in owners.values() if r),
        slots_assigned=sum(e - s + 1 for r in owners.values() for s, e in r),
        node_timeout_ms=1000,
    )
    for node_id, ranges in owners.items():
        reply.peers.append(
            admin_pb2.PeerState(
                node=cache_pb2.NodeInfo(
                    id=node_id,
                    address=ADDR[node_id],
                    role=cache_pb2.ROLE_PRIMARY,
                    slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in ranges],
                    config_epoch=1,
                ),
                flags=(["myself"] if node_id == myself else [])
                + ["primary"]
                + (flags or {}).get(node_id, []),
                bus_address=ADDR[node_id].replace(":70", ":170"),
                pong_received_ms_ago=12,
            )
        )
    return reply


def healthy(myself: str) -> admin_pb2.ClusterStateReply:
    return state(myself, {n: [r] for n, r in THIRDS.items()})


def problems_for(states: dict[str, admin_pb2.ClusterStateReply | Exception]) -> list[str]:
    seed = ADDR[A]
    seed_state = states[seed]
    assert isinstance(seed_state, admin_pb2.ClusterStateReply)
    expected = check.targets(seed, seed_state)
    return check.find_problems(seed, expected, states)


# ---- check ----------------------------------------------------------------------------------


def test_agreeing_views_have_no_problems() -> None:
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {
        ADDR[n]: healthy(n) for n in (A, B, C)
    }
    assert problems_for(states) == []
    seed_state = states[ADDR[A]]
    assert isinstance(seed_state, admin_pb2.ClusterStateReply)
    assert check.targets(ADDR[A], seed_state) == {ADDR[n]: n for n in (A, B, C)}


def test_an_unreachable_node_is_a_problem() -> None:
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {
        ADDR[A]: healthy(A),
        ADDR[B]: healthy(B),
        ADDR[C]: OperationError(f"{ADDR[C]}: cannot reach the node"),
    }
    problems = problems_for(states)
    assert problems == [f"{ADDR[C]} (cccccccc) does not answer: {ADDR[C]}: cannot reach the node"]
    data = check.report(check.targets(ADDR[A], healthy(A)), states, problems)
    assert data["ok"] is False
    assert [n["reachable"] for n in data["nodes"]] == [True, True, False]


def test_a_different_slot_map_is_reported_by_range() -> None:
    # B believes it also owns A's first 100 slots (say, after a claim that has not spread yet).
    a_last = THIRDS[A][1]
    b_view = state(
        B,
        {A: [(100, a_last)], B: [(0, 99), THIRDS[B]], C: [THIRDS[C]]},
    )
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {
        ADDR[A]: healthy(A),
        ADDR[B]: b_view,
        ADDR[C]: healthy(C),
    }
    assert problems_for(states) == [
        f"slots 0-99: {ADDR[A]} says aaaaaaaa, {ADDR[B]} (bbbbbbbb) says bbbbbbbb"
    ]


def test_uncovered_slots_down_state_and_flags_are_reported() -> None:
    gap = state(A, {A: [(0, 5000)], B: [THIRDS[B]], C: [THIRDS[C]]}, ok=False, flags={C: ["pfail"]})
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {
        ADDR[A]: gap,
        ADDR[B]: gap.__class__.FromString(gap.SerializeToString()),
        ADDR[C]: gap.__class__.FromString(gap.SerializeToString()),
    }
    # The copies answer as A: each is also reported as the wrong node at its address.
    problems = problems_for(states)
    assert problems[:3] == [
        f"{ADDR[A]} (aaaaaaaa) reports the cluster as down (state FAIL)",
        f"{ADDR[A]} (aaaaaaaa) sees 461 of 16384 slots without an owner: 5001-5461",
        f"{ADDR[A]} (aaaaaaaa) flags {ADDR[C]} (cccccccc) as pfail",
    ]
    assert f"{ADDR[B]} is node aaaaaaaa, but {ADDR[A]} has bbbbbbbb at that address" in problems


def test_a_different_node_set_is_reported() -> None:
    lonely = state(B, {B: [THIRDS[B]]}, ok=False)
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {
        ADDR[A]: healthy(A),
        ADDR[B]: lonely,
        ADDR[C]: healthy(C),
    }
    problems = problems_for(states)
    label = f"{ADDR[B]} (bbbbbbbb)"
    assert f"{label} reports the cluster as down (state FAIL)" in problems
    assert (
        f"{label} does not know nodes that {ADDR[A]} knows: "
        f"{ADDR[A]} (aaaaaaaa), {ADDR[C]} (cccccccc)" in problems
    )
    assert any(
        p.startswith(f"slots 0-5461: {ADDR[A]} says aaaaaaaa, {label} says unassigned")
        for p in problems
    )


def test_many_disagreements_are_summarised() -> None:
    # B sees every other slot of A's range as its own: thousands of ranges differ.
    stripes = [(s, s) for s in range(0, 200, 2)]
    b_view = state(
        B,
        {
            A: [r for r in [(s + 1, s + 1) for s in range(0, 200, 2)]] + [(200, THIRDS[A][1])],
            B: [*stripes, THIRDS[B]],
            C: [THIRDS[C]],
        },
    )
    states: dict[str, admin_pb2.ClusterStateReply | Exception] = {
        ADDR[A]: healthy(A),
        ADDR[B]: b_view,
        ADDR[C]: healthy(C),
    }
    problems = problems_for(states)
    assert len(problems) == check.MAX_RANGES_LISTED + 1
    assert problems[-1].startswith("... and 95 more slot ranges")


def test_a_standalone_seed_is_one_problem() -> None:
    reply = admin_pb2.ClusterStateReply(cluster_enabled=False, myself=A)
    assert check.find_problems(ADDR[A], {ADDR[A]: A}, {ADDR[A]: reply}) == [
        f"{ADDR[A]} is not in cluster mode (start it with --cluster-enabled yes)"
    ]


# ---- views ----------------------------------------------------------------------------------


def test_runs_and_slot_view_cover_every_slot_once() -> None:
    reply = state(A, {A: [(0, 99), (200, 300)], B: [(100, 199)], C: []})
    data = views.slots_view(ADDR[A], reply)
    assert data["assigned"] == 301
    assert data["unassigned"] == 16384 - 301
    assert [(r["start"], r["end"], r["node_id"]) for r in data["ranges"]] == [
        (0, 99, A),
        (100, 199, B),
        (200, 300, A),
        (301, 16383, None),
    ]
    assert views.slot_owner(data, 150)["address"] == ADDR[B]
    assert views.slot_owner(data, 16383)["node_id"] is None
    assert views.slot_rows(data["ranges"])[-1] == ["301-16383", 16083, "UNASSIGNED", "-"]


def test_nodes_view_orders_primaries_by_slot_and_hides_own_ages() -> None:
    reply = state(B, {C: [THIRDS[C]], A: [THIRDS[A]], B: [THIRDS[B]]})
    data = views.nodes_view(ADDR[B], reply)
    assert [n["id"] for n in data["nodes"]] == [A, B, C]
    assert data["nodes"][1]["flags"] == ["myself", "primary"]
    rows = views.node_rows(data)
    assert rows[0][:7] == ["aaaaaaaa", ADDR[A], "primary", "primary", 1, "0-5461", 5462]
    assert rows[1][7:9] == ["-", "-"]  # myself
    assert rows[0][8] == "12ms"
    assert "cluster ok" in views.summary_line(data)


@pytest.mark.parametrize(
    ("ranges", "text"),
    [
        ([], "-"),
        ([(5, 5)], "5"),
        ([(0, 1), (3, 3)], "0-1, 3"),
        ([(i, i) for i in range(0, 12, 2)], "0, 2, 4, 6, +2 more"),
    ],
)
def test_format_ranges(ranges: list[tuple[int, int]], text: str) -> None:
    assert views.format_ranges(ranges) == text


# ---- local cluster plans and instructions ---------------------------------------------------


def test_plan_places_bus_ports_at_the_offset() -> None:
    specs = local.plan(3, 7000, 10000)
    assert [(s.port, s.bus_port) for s in specs] == [(7000, 17000), (7001, 17001), (7002, 17002)]


@pytest.mark.parametrize(
    ("nodes", "base", "offset", "message"),
    [
        (3, 65534, 1, "no room for 3 client ports"),
        (3, 60000, 10000, "bus ports would reach 70002"),
        (3, 7000, 2, "collide with client ports; use at least 3"),
        (0, 7000, 10000, "1..64 nodes"),
    ],
)
def test_plan_refuses_impossible_layouts(nodes: int, base: int, offset: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        local.plan(nodes, base, offset)


def test_connect_info_is_runnable() -> None:
    info = connect_info(["127.0.0.1:7000", "127.0.0.1:7001"], "my dir", ".cluster")
    compile(info["python"], "<snippet>", "exec")
    for command in info["grpcurl"]:
        words = shlex.split(command)
        assert words[:3] == ["grpcurl", "-plaintext", "-d"]
        body = json.loads(words[3])
        assert body["key"] == "Z3JlZXRpbmc="  # base64 of b"greeting"
        assert words[4] == "127.0.0.1:7000"
    assert info["stop"] == "clusterctl down --dir 'my dir'"
    assert down_command(".cluster", ".cluster") == "clusterctl down"
