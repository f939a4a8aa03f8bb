"""Agreement between views, measured against the newest view: counts that do not fall back. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slotcache.ctl.agreement import lagging, role_map, slot_map, waiting_text
from slotcache.v1 import admin_pb2, cache_pb2

P1, P2, P3, D, R1 = (c * 40 for c in "abcde")
NODES = (P1, P2, P3, D, R1)

Ranges = Sequence[tuple[int, int]]
# node id -> (slot ranges, config epoch, primary id or "")
Layout = Mapping[str, tuple[Ranges, int, str]]

# D owned 0-99 and 5000-5099 at epoch 4; a weight-0 rebalance gave them to P1 (epoch 5)
# and P2 (epoch 6), and D became a replica of P2.
BEFORE: Layout = {
    P1: ([(100, 4999)], 1, ""),
    P2: ([(5100, 10999)], 2, ""),
    P3: ([(11000, 16383)], 3, ""),
    D: ([(0, 99), (5000, 5099)], 4, ""),
    R1: ([], 0, P1),
}
HALF_WAY: Layout = {**BEFORE, P1: ([(0, 4999)], 5, ""), D: ([(5000, 5099)], 4, "")}
AFTER: Layout = {
    **BEFORE,
    P1: ([(0, 4999)], 5, ""),
    P2: ([(5000, 10999)], 6, ""),
    D: ([], 4, P2),
}


def view(myself: str, layout: Layout, ok: bool = True) -> admin_pb2.ClusterStateReply:
    reply = admin_pb2.ClusterStateReply(
        cluster_enabled=True, myself=myself, cluster_ok=ok, known_nodes=len(layout)
    )
    for node, (ranges, epoch, primary) in layout.items():
        reply.peers.append(
            admin_pb2.PeerState(
                node=cache_pb2.NodeInfo(
                    id=node,
                    primary_id=primary,
                    config_epoch=epoch,
                    slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in ranges],
                )
            )
        )
    return reply


def test_identical_complete_views_agree() -> None:
    assert lagging([view(n, AFTER) for n in NODES], expected_nodes=5) == {}


def test_the_count_of_nodes_caught_up_only_grows_while_the_last_moves_spread() -> None:
    # The seed (P3) is among the last to learn.
    known = {P1: HALF_WAY, P2: AFTER, P3: BEFORE, D: AFTER, R1: BEFORE}
    order = [P3, P1, P2, D, R1]
    counts, like_the_seed = [], []
    for learner in [None, P1, R1, P3]:
        if learner is not None:
            known[learner] = AFTER
        states = [view(n, known[n]) for n in order]
        counts.append(len(order) - len(lagging(states)))
        shapes = [(slot_map(s), role_map(s)) for s in states]
        like_the_seed.append(shapes.count(shapes[0]))
    assert counts == [2, 3, 4, 5]
    # Counting the views equal to the seed's would fall back before it jumps.
    assert like_the_seed == [2, 2, 1, 5]


def test_each_node_is_the_authority_on_its_own_role() -> None:
    # Only D knows yet that it follows P2; the others still list it as a primary.
    moved = {**AFTER, D: ([], 4, "")}
    states = [view(P1, moved), view(P2, moved), view(D, AFTER)]
    assert lagging(states) == {
        0: "has not learned every node's role yet",
        1: "has not learned every node's role yet",
    }


def test_reasons_in_words() -> None:
    partial = {n: AFTER[n] for n in (P1, P2, P3, D)}
    states = [view(P1, AFTER), view(P2, partial), view(P3, BEFORE), view(D, AFTER, ok=False)]
    assert lagging(states, expected_nodes=5) == {
        1: "knows 4 of 5 nodes",
        2: "has not learned every slot's owner yet",
        3: "does not report the cluster ok yet",
    }


def test_waiting_text_names_a_few_and_counts_the_rest() -> None:
    addresses = [f"127.0.0.1:{7000 + i}" for i in range(7)]
    behind = {i: "knows 1 of 7 nodes" for i in range(1, 7)}
    assert waiting_text("agree on the cluster", addresses, behind, 7) == (
        "1 of 7 nodes agree on the cluster; waiting for 127.0.0.1:7001 (knows 1 of 7 nodes), "
        "127.0.0.1:7002 (knows 1 of 7 nodes), 127.0.0.1:7003 (knows 1 of 7 nodes), "
        "127.0.0.1:7004 (knows 1 of 7 nodes), 2 more"
    )
