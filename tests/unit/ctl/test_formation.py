"""The formation rule: who forms, who joins as what, when slots are rebalanced; proxies."""

from __future__ import annotations

import pytest

from slotcache.ctl.bootstrap import commands, live_primaries, passed_on, pod_addresses, seen
from slotcache.ctl.formation import (
    Create,
    Forget,
    Join,
    JoinPolicy,
    Layout,
    Meet,
    PrimaryView,
    Rebalance,
    Seen,
    Wait,
    decide,
    decide_proxy,
)
from slotcache.ctl.main import build_parser
from slotcache.v1 import admin_pb2, cache_pb2

LAYOUT = Layout(primaries=3, replicas=1)
ADDRS = [f"slotcache-{i}.slotcache-headless.ns.svc:7000" for i in range(8)]


def fresh(i: int) -> Seen:
    return Seen(ADDRS[i], f"id{i}", member=False, cluster_ok=False)


def member(i: int, ok: bool = True) -> Seen:
    return Seen(ADDRS[i], f"id{i}", member=True, cluster_ok=ok)


FORMED = [PrimaryView(f"id{i}", 5461, 1) for i in range(3)]


def test_ordinal_zero_creates_once_every_expected_pod_answers() -> None:
    pods = [fresh(i) for i in range(6)]
    assert decide(ADDRS[0], pods, [], LAYOUT) == Create(tuple(ADDRS[:6]), 1)


def test_ordinal_zero_waits_for_missing_pods() -> None:
    pods: list[Seen | None] = [fresh(i) for i in range(6)]
    pods[4] = None
    action = decide(ADDRS[0], pods, [], LAYOUT)
    assert action == Wait("5 of 6 expected nodes answer")


def test_only_ordinal_zero_forms() -> None:
    pods = [fresh(i) for i in range(6)]
    for i in range(1, 6):
        assert decide(ADDRS[i], pods, [], LAYOUT) == Wait("ordinal 0 forms the cluster")


def test_extra_ordinals_are_not_part_of_the_first_cluster() -> None:
    pods = [fresh(i) for i in range(8)]
    action = decide(ADDRS[0], pods, [], LAYOUT)
    assert isinstance(action, Create)
    assert action.addresses == tuple(ADDRS[:6])


def test_restarted_pod_zero_never_recreates_a_formed_cluster() -> None:
    """Idempotent: a member that kept its node file is a member, so nobody forms again."""
    pods = [member(i) for i in range(6)]
    for i in range(6):
        action = decide(ADDRS[i], pods, FORMED, LAYOUT)
        assert not isinstance(action, Create | Join)


def test_pod_zero_with_a_lost_volume_is_added_back_by_the_lowest_member() -> None:
    pods: list[Seen | None] = [fresh(0), *[member(i) for i in range(1, 6)]]
    # Its old identity failed over: primary id3 (its replica) now has no replica.
    primaries = [PrimaryView("id3", 5461, 0), PrimaryView("id1", 5461, 1), FORMED[2]]
    assert decide(ADDRS[0], pods, [], LAYOUT) == Wait(f"{ADDRS[1]} manages the membership")
    assert decide(ADDRS[1], pods, primaries, LAYOUT) == Join(ADDRS[0], ADDRS[1], "id3")


def test_only_the_lowest_answering_member_acts() -> None:
    pods: list[Seen | None] = [None, *[member(i) for i in range(1, 6)], fresh(6)]
    assert decide(ADDRS[1], pods, FORMED, LAYOUT) == Join(ADDRS[6], ADDRS[1], None)
    for i in range(2, 7):
        assert isinstance(decide(ADDRS[i], pods, FORMED, LAYOUT), Wait)


def test_scale_out_adds_a_primary_then_its_replica_then_rebalances() -> None:
    pods: list[Seen | None] = [*[member(i) for i in range(6)], fresh(6), fresh(7)]
    # Every primary has its replica: the first new pod becomes an empty primary.
    assert decide(ADDRS[0], pods, FORMED, LAYOUT) == Join(ADDRS[6], ADDRS[0], None)
    pods[6] = member(6)
    grown = [*FORMED, PrimaryView("id6", 0, 0)]
    # The next one follows the primary that has none.
    assert decide(ADDRS[0], pods, grown, LAYOUT) == Join(ADDRS[7], ADDRS[0], "id6")
    pods[7] = member(7)
    paired = [*FORMED, PrimaryView("id6", 0, 1)]
    assert decide(ADDRS[0], pods, paired, LAYOUT) == Rebalance(ADDRS[0])
    balanced = [*FORMED, PrimaryView("id6", 4096, 1)]
    assert decide(ADDRS[0], pods, balanced, LAYOUT) == Wait("the cluster is formed")


def test_primaries_policy_never_adds_replicas() -> None:
    layout = Layout(3, 1, JoinPolicy.PRIMARIES)
    pods: list[Seen | None] = [*[member(i) for i in range(6)], fresh(6)]
    short = [PrimaryView("id0", 5461, 0)]
    assert decide(ADDRS[0], pods, short, layout) == Join(ADDRS[6], ADDRS[0], None)


def test_no_rebalance_while_the_cluster_is_not_ok() -> None:
    pods = [member(0, ok=False), *[member(i) for i in range(1, 6)]]
    empty = [*FORMED, PrimaryView("id6", 0, 0)]
    assert decide(ADDRS[0], pods, empty, LAYOUT) == Wait("the cluster is not ok")


def test_layout_rejects_impossible_shapes() -> None:
    with pytest.raises(ValueError):
        Layout(0, 1)
    with pytest.raises(ValueError):
        Layout(3, -1)
    assert Layout(3, 2).size == 9


def test_pod_addresses_need_the_ordinal_placeholder() -> None:
    assert pod_addresses("p-{ordinal}.h:7000", 2) == ["p-0.h:7000", "p-1.h:7000"]
    with pytest.raises(ValueError):
        pod_addresses("p.h:7000", 2)


def _peer(
    node_id: str, flags: list[str], primary_id: str = "", slots: int = 0
) -> admin_pb2.PeerState:
    ranges = [cache_pb2.SlotRange(start=0, end=slots - 1)] if slots else []
    role = cache_pb2.ROLE_REPLICA if "replica" in flags else cache_pb2.ROLE_PRIMARY
    node = cache_pb2.NodeInfo(id=node_id, primary_id=primary_id, slots=ranges, role=role)
    return admin_pb2.PeerState(node=node, flags=flags)


def test_failed_primaries_are_not_candidates_but_failing_replicas_count() -> None:
    state = admin_pb2.ClusterStateReply(
        myself="a",
        known_nodes=4,
        peers=[
            _peer("a", ["myself", "primary"], slots=100),
            _peer("b", ["replica"], primary_id="a"),
            _peer("c", ["replica", "fail"], primary_id="a"),
            _peer("d", ["primary", "fail"]),
        ],
    )
    # The failing replica still counts: it may be a pod restarting.
    assert live_primaries(state) == [PrimaryView("a", 100, 2)]
    assert seen("x:1", state) == Seen("x:1", "a", True, False, frozenset("abcd"))
    lone = admin_pb2.ClusterStateReply(myself="z", known_nodes=1)
    assert not seen("z:1", lone).member


def test_actions_become_the_commands_an_operator_would_type() -> None:
    assert commands(Create(("a:1", "b:1"), 1), 5) == [
        ["create", "--timeout", "5", "--replicas", "1", "a:1", "b:1"]
    ]
    assert commands(Join("n:1", "a:1", "id3"), 2.5) == [
        ["add-node", "--timeout", "2.5", "n:1", "a:1", "--replica-of", "id3"]
    ]
    assert commands(Rebalance("a:1"), 5) == [
        ["rebalance", "--timeout", "5", "a:1", "--use-empty-primaries", "--yes"]
    ]
    assert commands(Wait("x"), 5) == []


def test_a_replaced_identity_is_forgotten_once_its_name_answers_with_a_new_id() -> None:
    pods = [member(i) for i in range(6)]
    ghost = ("old1", ADDRS[1])
    action = decide(ADDRS[0], pods, FORMED, LAYOUT, failed=[ghost])
    assert action == Forget("old1", tuple(ADDRS[:6]))
    # A failed node whose name does not answer (or answers with its own id) is kept:
    # it may come back with its node file.
    down: list[Seen | None] = [member(0), None, *[member(i) for i in range(2, 6)]]
    assert decide(ADDRS[0], down, FORMED, LAYOUT, failed=[ghost]) == Wait("the cluster is formed")
    same = [member(0), Seen(ADDRS[1], "old1", True, True), *pods[2:]]
    assert decide(ADDRS[0], same, FORMED, LAYOUT, failed=[ghost]) == Wait("the cluster is formed")


def test_a_lost_replica_is_forgotten_before_its_pod_joins_again() -> None:
    """The pod's new identity then replaces it as the replica of the same primary."""
    pods: list[Seen | None] = [*[member(i) for i in range(5)], fresh(5)]
    ghost = ("old5", ADDRS[5])
    assert decide(ADDRS[0], pods, FORMED, LAYOUT, failed=[ghost]) == Forget(
        "old5", tuple(ADDRS[:5])
    )
    short = [*FORMED[:2], PrimaryView("id2", 5461, 0)]
    assert decide(ADDRS[0], pods, short, LAYOUT) == Join(ADDRS[5], ADDRS[0], "id2")


def test_a_replaced_identity_is_matched_by_name_whichever_port_is_announced() -> None:
    """Under --tls-cluster nodes announce their TLS port; the sidecar may dial another one."""
    pods = [member(i) for i in range(6)]
    tls_ghost = ("old1", ADDRS[1].replace(":7000", ":7443"))
    assert decide(ADDRS[0], pods, FORMED, LAYOUT, failed=[tls_ghost]) == Forget(
        "old1", tuple(ADDRS[:6])
    )
    # Another pod's name on the same port is not this pod.
    stranger = ("old9", "slotcache-9.slotcache-headless.ns.svc:7000")
    assert decide(ADDRS[0], pods, FORMED, LAYOUT, failed=[stranger]) == Wait(
        "the cluster is formed"
    )


def test_a_tls_pod_that_lost_its_volume_joins_after_its_old_id_is_forgotten() -> None:
    tls = [a.replace(":7000", ":7443") for a in ADDRS]
    pods = [Seen(a, f"id{i}", member=i < 5, cluster_ok=True) for i, a in enumerate(tls[:6])]
    ghost = ("old5", tls[5])
    assert decide(tls[0], pods, FORMED, LAYOUT, failed=[ghost]) == Forget("old5", tuple(tls[:5]))


PROXY = "10.1.2.3:7000"


def proxy(node_id: str = "p1") -> Seen:
    return Seen(PROXY, node_id, member=False, cluster_ok=False, knows=frozenset({node_id}))


def knowing(i: int, *ids: str, ok: bool = True) -> Seen:
    return Seen(ADDRS[i], f"id{i}", True, ok, frozenset({f"id{i}", *ids}))


def test_a_proxy_waits_for_its_node_and_for_a_formed_cluster() -> None:
    cluster = [knowing(i) for i in range(6)]
    assert decide_proxy(None, cluster) == Wait("the proxy's node does not answer")
    assert decide_proxy(proxy(), []) == Wait("no formed cluster answers yet")
    unformed = [fresh(i) for i in range(6)]
    assert decide_proxy(proxy(), unformed) == Wait("no formed cluster answers yet")
    not_ok = [knowing(i, ok=False) for i in range(6)]
    assert decide_proxy(proxy(), not_ok) == Wait("no formed cluster answers yet")


def test_a_proxy_is_met_by_the_lowest_healthy_member_until_that_member_knows_it() -> None:
    cluster: list[Seen | None] = [None, knowing(1, ok=False), *[knowing(i) for i in range(2, 6)]]
    assert decide_proxy(proxy(), cluster) == Meet(PROXY, ADDRS[2])
    cluster[2] = knowing(2, "p1")
    assert decide_proxy(proxy(), cluster) == Wait("the proxy is in the cluster")


def test_a_proxy_the_cluster_forgot_is_met_again_under_its_new_id() -> None:
    """A restarted proxy container has a new id; its old one is forgotten by the servers."""
    cluster = [knowing(i, "p1") for i in range(6)]
    assert decide_proxy(proxy("p1"), cluster) == Wait("the proxy is in the cluster")
    assert decide_proxy(proxy("p2"), cluster) == Meet(PROXY, ADDRS[0])


def test_proxies_are_never_primaries_to_give_replicas() -> None:
    state = admin_pb2.ClusterStateReply(
        myself="a",
        known_nodes=3,
        peers=[
            _peer("a", ["myself", "primary"], slots=100),
            _peer("b", ["replica"], primary_id="a"),
            _peer("p", ["proxy"]),
        ],
    )
    assert live_primaries(state) == [PrimaryView("a", 100, 1)]
    assert seen("a:1", state).knows == frozenset({"a", "b", "p"})


def test_the_sidecars_tls_files_and_credentials_reach_the_commands_it_runs() -> None:
    args = build_parser().parse_args(
        [
            "bootstrap", "--self", "p:7443", "--pods", "p-{ordinal}:7443", "--role", "proxy",
            "--tls-ca", "/tls/ca.crt", "--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key",
            "--user", "bootstrap", "--token", "t0ken", "--token-file", "/run/token",
        ]
    )  # fmt: skip
    assert passed_on(args) == {
        "SLOTCACHE_TLS_CA": "/tls/ca.crt",
        "SLOTCACHE_TLS_CERT": "/tls/tls.crt",
        "SLOTCACHE_TLS_KEY": "/tls/tls.key",
        "SLOTCACHE_USER": "bootstrap",
        "SLOTCACHE_TOKEN": "t0ken",
        "SLOTCACHE_TOKEN_FILE": "/run/token",
    }
    assert args.role == "proxy" and args.primaries is None
