"""create, nodes, slots, check and info through the CLI, against real cluster-mode servers."""

from __future__ import annotations

import json

import pytest

from slotcache.contract import split_slots
from slotcache.ctl.cluster_ops import fetch_state
from slotcache.ctl.launcher import free_port
from tests.support.ctl import Ctl
from tests.support.processes import Cluster, ServerFactory


def test_create_forms_a_cluster_that_check_accepts(ctl: Ctl, servers: ServerFactory) -> None:
    nodes = [servers.start("--node-timeout", "1000", cluster=True) for _ in range(3)]
    addresses = [n.address for n in nodes]

    created = ctl("create", *addresses, "--json")
    assert created.code == 0, created.err
    data = json.loads(created.out)
    assert [n["address"] for n in data["nodes"]] == addresses
    assert [tuple(n["slots"][0]) for n in data["nodes"]] == split_slots(3)
    assert sum(n["slot_count"] for n in data["nodes"]) == 16384
    assert all(len(n["id"]) == 40 for n in data["nodes"])
    assert {n["role"] for n in data["nodes"]} == {"primary"}
    assert data["replicas"] == 0

    for address in addresses:
        checked = ctl("check", address)
        assert checked.code == 0, checked.out + checked.err
        assert "OK: all 16384 slots are covered and 3 nodes agree" in checked.out


def test_create_prints_a_table_for_people(ctl: Ctl, servers: ServerFactory) -> None:
    node = servers.start(cluster=True)
    result = ctl("create", node.address)
    assert result.code == 0, result.err
    assert "cluster created" in result.out
    assert node.address in result.out and "0-16383" in result.out
    assert f"clusterctl check {node.address}" in result.out


def test_create_over_nodes_in_a_cluster_fails_and_changes_nothing(
    ctl: Ctl, servers: ServerFactory
) -> None:
    cluster = Cluster.start(servers, 2)
    fresh = servers.start(cluster=True)
    before = fetch_state(fresh.address, 5.0)

    again = ctl("create", *cluster.addresses)
    assert again.code == 1
    assert "already belongs to a cluster" in again.err
    assert "nothing was changed" in again.err

    mixed = ctl("create", fresh.address, cluster.addresses[1])
    assert mixed.code == 1
    assert f"{cluster.addresses[1]} already belongs to a cluster" in mixed.err
    after = fetch_state(fresh.address, 5.0)
    assert (after.known_nodes, after.slots_assigned) == (before.known_nodes, 0) == (1, 0)
    assert ctl("check", cluster.addresses[0]).code == 0


def test_create_refuses_a_node_without_cluster_mode(ctl: Ctl, servers: ServerFactory) -> None:
    standalone = servers.start()
    result = ctl("create", standalone.address)
    assert result.code == 1
    assert "not in cluster mode" in result.err


def test_nodes_json_describes_every_node(ctl: Ctl, cluster3: Cluster) -> None:
    result = ctl("nodes", cluster3.addresses[1], "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["cluster_ok"] is True
    assert data["known_nodes"] == data["size"] == 3
    assert data["slots_assigned"] == 16384
    assert data["node_timeout_ms"] == 1000
    assert [n["address"] for n in data["nodes"]] == cluster3.addresses
    assert [n["slots"] for n in data["nodes"]] == [[list(r)] for r in split_slots(3)]
    me = [n for n in data["nodes"] if "myself" in n["flags"]]
    assert [n["address"] for n in me] == [cluster3.addresses[1]]
    assert data["myself"] == me[0]["id"]
    for node in data["nodes"]:
        assert node["role"] == "primary"
        assert node["primary_id"] is None
        assert node["failing"] is False
        assert node["failure_reports"] == 0
        assert node["bus_address"].startswith("127.0.0.1:")
        assert {"ping_sent_ms_ago", "pong_received_ms_ago", "config_epoch"} <= node.keys()
    assert sorted(n["config_epoch"] for n in data["nodes"]) == [1, 2, 3]


def test_nodes_table(ctl: Ctl, cluster3: Cluster) -> None:
    result = ctl("nodes", cluster3.addresses[0])
    assert result.code == 0, result.err
    assert f"view of {cluster3.addresses[0]}" in result.out
    assert "cluster ok" in result.out
    for address in cluster3.addresses:
        assert address in result.out
    assert "myself,primary" in result.out
    assert "10923-16383" in result.out


def test_slots_json_and_table(ctl: Ctl, cluster3: Cluster) -> None:
    result = ctl("slots", cluster3.addresses[2], "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["assigned"], data["unassigned"]) == (16384, 0)
    assert [(r["start"], r["end"], r["address"]) for r in data["ranges"]] == [
        (s, e, a) for (s, e), a in zip(split_slots(3), cluster3.addresses, strict=True)
    ]
    table = ctl("slots", cluster3.addresses[2])
    assert "16384 assigned" in table.out
    assert "UNASSIGNED" not in table.out


def test_slots_for_one_slot(ctl: Ctl, cluster3: Cluster) -> None:
    result = ctl("slots", cluster3.addresses[0], "--slot", "16383", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["slot"], data["address"]) == (16383, cluster3.addresses[2])
    text = ctl("slots", cluster3.addresses[0], "--slot", "0")
    assert f"slot 0 is served by {cluster3.addresses[0]}" in text.out


def test_check_json_when_healthy(ctl: Ctl, cluster3: Cluster) -> None:
    result = ctl("check", cluster3.addresses[0], "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data == {"ok": True, "problems": [], "warnings": [], "nodes": data["nodes"]}
    assert sorted(n["address"] for n in data["nodes"]) == sorted(cluster3.addresses)
    assert all(n["reachable"] and n["cluster_ok"] for n in data["nodes"])
    assert {(n["role"], n["primary_id"], n["replication"]) for n in data["nodes"]} == {
        ("primary", None, "no replicas")
    }


def test_info_still_works(ctl: Ctl, cluster3: Cluster) -> None:
    result = ctl("info", cluster3.addresses[0], "--json")
    assert result.code == 0, result.err
    assert "keys" in json.loads(result.out)["stats"]


def test_check_fails_when_a_node_is_killed(ctl: Ctl, servers: ServerFactory) -> None:
    cluster = Cluster.start(servers, 3)
    victim = cluster.nodes[2]
    victim.kill()

    result = ctl("check", cluster.addresses[0], "--timeout", "2")
    assert result.code == 1
    assert f"{victim.address} (" in result.out and "does not answer" in result.out

    as_json = ctl("check", cluster.addresses[1], "--timeout", "2", "--json")
    assert as_json.code == 1
    data = json.loads(as_json.out)
    assert data["ok"] is False
    down = [n for n in data["nodes"] if not n["reachable"]]
    assert [n["address"] for n in down] == [victim.address]
    assert "cannot reach the node" in down[0]["error"]


@pytest.mark.parametrize("command", ["info", "nodes", "slots", "check", "create"])
def test_an_unreachable_address_is_an_operational_error(ctl: Ctl, command: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = ctl(command, address, "--timeout", "2")
    assert result.code == 1
    assert f"{address}: cannot reach the node" in result.err
    assert result.out == ""
