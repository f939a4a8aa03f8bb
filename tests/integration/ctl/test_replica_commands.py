"""create --replicas, add-node and failover through the CLI, against real cluster-mode servers.

Every cluster here is formed from fresh processes booted in parallel, and
each test that changes roles gets its own, so a failover in one test never
leaves another test a cluster in the middle of converging.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import slotcache
from slotcache.contract import split_slots
from slotcache.ctl.cluster_ops import (
    CreatedNode,
    NodeHandle,
    create_cluster,
    fetch_state,
)
from slotcache.ctl.launcher import ServerProcess
from tests.support.ctl import Ctl, start_nodes
from tests.support.processes import ServerFactory

FAST = ("--node-timeout", "1000")


def form(
    servers: ServerFactory, primaries: int, replicas: int, *flags: str
) -> tuple[list[ServerProcess], list[CreatedNode]]:
    """A formed cluster (nodes in create order: primaries first) and what create reported."""
    nodes = start_nodes(servers, primaries * (replicas + 1), *(flags or FAST))
    return nodes, create_cluster([n.address for n in nodes], replicas=replicas)


def json_of(ctl: Ctl, *argv: str) -> dict[str, Any]:
    result = ctl(*argv, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


def wait_until_check_passes(ctl: Ctl, address: str, within: float = 20.0) -> dict[str, Any]:
    """Poll ``check`` until it exits 0 with no warnings (a failover takes a gossip round)."""
    deadline = time.monotonic() + within
    while True:
        result = ctl("check", address, "--json")
        data: dict[str, Any] = json.loads(result.out)
        if result.code == 0 and not data["warnings"]:
            return data
        assert time.monotonic() < deadline, data["problems"] + data["warnings"]
        time.sleep(0.2)


def keys_on(address: str) -> int:
    """How many keys the node itself holds (Info counts its own keyspace, primary or replica)."""
    with NodeHandle.open(address, 5.0) as node:
        return node.info().stats.get("keys", 0)


def write_keys(address: str, n: int) -> dict[bytes, bytes]:
    data = {f"key:{i}".encode(): f"value:{i}".encode() for i in range(n)}
    with slotcache.Client(address, timeout=5.0) as cache:
        for key, value in data.items():
            cache.set(key, value)
    return data


def roles(address: str) -> dict[str, tuple[str, str | None]]:
    """Node id → (role, primary id) in the view of ``address``."""
    view = fetch_state(address, 5.0)
    return {
        p.node.id: ("replica" if p.node.primary_id else "primary", p.node.primary_id or None)
        for p in view.peers
    }


# ---- create --replicas ----------------------------------------------------------------------


def test_create_with_replicas_assigns_roles_round_robin(ctl: Ctl, servers: ServerFactory) -> None:
    nodes = start_nodes(servers, 6, *FAST)
    addresses = [n.address for n in nodes]

    data = json_of(ctl, "create", "--replicas", "1", *addresses)
    assert data["replicas"] == 1
    created = data["nodes"]
    assert [n["address"] for n in created] == addresses
    assert [n["role"] for n in created] == ["primary"] * 3 + ["replica"] * 3
    assert [tuple(n["slots"][0]) for n in created[:3]] == split_slots(3)
    assert all(n["slots"] == [] and n["slot_count"] == 0 for n in created[3:])
    ids = [n["id"] for n in created]
    assert [n["primary_id"] for n in created] == [None] * 3 + ids[:3]
    assert [n["primary_address"] for n in created[3:]] == addresses[:3]

    # Every node's own view has the same roles, and check is happy, warnings included.
    expected = {ids[i]: ("primary", None) for i in range(3)}
    expected |= {ids[3 + i]: ("replica", ids[i]) for i in range(3)}
    for address in addresses:
        assert roles(address) == expected
    checked = json_of(ctl, "check", addresses[4])
    assert checked["ok"] is True and checked["warnings"] == []
    by_address = {n["address"]: n for n in checked["nodes"]}
    assert by_address[addresses[0]]["replication"] == "1/1 replicas in sync"
    assert by_address[addresses[3]]["replication"] == "in sync"
    assert by_address[addresses[3]]["primary_id"] == ids[0]

    table = ctl("nodes", addresses[0])
    assert f"replica of {ids[0][:8]}" in table.out


def test_create_with_replicas_prints_the_plan(ctl: Ctl, servers: ServerFactory) -> None:
    nodes = start_nodes(servers, 4, *FAST)
    a = [n.address for n in nodes]
    result = ctl("create", "--replicas", "1", *a)
    assert result.code == 0, result.err
    assert "plan: 2 primaries with 1 replica each" in result.out
    assert f"{a[2]} will replicate {a[0]}" in result.out
    assert f"{a[3]} will replicate {a[1]}" in result.out
    assert f"replica of {a[0]}" in result.out
    assert "every replica is in sync" in result.out


# ---- add-node -------------------------------------------------------------------------------


def test_add_node_as_an_empty_primary(ctl: Ctl, servers: ServerFactory) -> None:
    nodes, _ = form(servers, 3, 0)
    new = start_nodes(servers, 1, *FAST)[0]

    data = json_of(ctl, "add-node", new.address, nodes[1].address)
    assert data["address"] == new.address
    assert (data["role"], data["primary_id"], data["cluster_size"]) == ("primary", None, 4)

    for node in [*nodes, new]:
        view = fetch_state(node.address, 5.0)
        assert view.known_nodes == 4
        assert view.size == 3  # the new primary serves no slots yet
        assert roles(node.address)[data["id"]] == ("primary", None)
    checked = wait_until_check_passes(ctl, new.address)
    assert len(checked["nodes"]) == 4


def test_add_node_as_a_replica_copies_the_primary(ctl: Ctl, servers: ServerFactory) -> None:
    nodes, created = form(servers, 2, 0)
    written = write_keys(nodes[0].address, 300)
    primary = created[1]
    new = start_nodes(servers, 1, *FAST)[0]

    # A prefix of the id is enough, and the primary need not be the node we go through.
    result = ctl("add-node", new.address, nodes[0].address, "--replica-of", primary.id[:10])
    assert result.code == 0, result.err
    assert f"as a replica of {primary.address}" in result.out
    assert "in sync" in result.out
    assert "nodes know each other" in result.err  # progress

    on_primary = keys_on(primary.address)
    assert 0 < on_primary < len(written)
    assert keys_on(new.address) == on_primary
    for node in nodes:
        assert roles(node.address)[fetch_state(new.address, 5.0).myself] == (
            "replica",
            primary.id,
        )
    checked = wait_until_check_passes(ctl, nodes[0].address)
    replica = next(n for n in checked["nodes"] if n["address"] == new.address)
    assert (replica["role"], replica["replication"]) == ("replica", "in sync")


def test_add_node_refusals_change_nothing(ctl: Ctl, servers: ServerFactory) -> None:
    nodes, created = form(servers, 2, 1)
    existing = nodes[0].address
    fresh = start_nodes(servers, 2, *FAST)
    lone_cluster = fresh[1]
    create_cluster([lone_cluster.address])  # owns every slot of a cluster of its own
    standalone = servers.start()
    new = fresh[0].address
    replica = created[2]

    refusals = [
        (["--replica-of", "f" * 40], "no node of the cluster has an id starting with ffff"),
        (["--replica-of", replica.id[:8]], "is a replica (of"),
    ]
    for extra, message in refusals:
        result = ctl("add-node", new, existing, *extra)
        assert result.code == 1, result
        assert message in result.err
        assert "nothing was changed" in result.err

    for argv, message in [
        ([nodes[3].address, existing], "is already a member of this cluster"),
        ([lone_cluster.address, existing], "already owns 16,384 slots"),
        ([standalone.address, existing], "is not in cluster mode"),
        ([new, standalone.address], "is not in cluster mode, so it has no cluster to join"),
    ]:
        result = ctl("add-node", *argv)
        assert result.code == 1, result
        assert message in result.err

    for node in nodes:
        assert fetch_state(node.address, 5.0).known_nodes == 4
    alone = fetch_state(new, 5.0)
    assert (alone.known_nodes, alone.slots_assigned) == (1, 0)
    assert roles(new)[alone.myself] == ("primary", None)


# ---- failover -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["graceful", "force", "takeover"])
def test_failover_swaps_the_roles(ctl: Ctl, servers: ServerFactory, mode: str) -> None:
    nodes, created = form(servers, 3, 1)
    written = write_keys(nodes[0].address, 200)
    old, new = created[0], created[3]  # node 3 replicates node 0
    flags = [] if mode == "graceful" else [f"--{mode}"]

    data = json_of(ctl, "failover", new.address, *flags)
    assert (data["address"], data["id"], data["mode"]) == (new.address, new.id, mode)
    assert data["promoted"] is True
    assert data["old_primary"] == {
        "id": old.id,
        "address": old.address,
        "role": "replica",
        "primary_id": new.id,
        "error": None,
    }

    wait_until_check_passes(ctl, nodes[1].address)
    view = json_of(ctl, "nodes", nodes[2].address)
    by_id = {n["id"]: n for n in view["nodes"]}
    assert by_id[new.id]["role"] == "primary"
    assert by_id[new.id]["slots"] == [list(split_slots(3)[0])]
    assert (by_id[old.id]["role"], by_id[old.id]["primary_id"]) == ("replica", new.id)
    assert (by_id[old.id]["slot_count"], by_id[old.id]["primary_address"]) == (0, new.address)
    if mode == "graceful":
        # Graceful loses nothing: every acknowledged write is still there.
        with slotcache.Client(nodes[1].address, timeout=5.0) as cache:
            assert {k: cache.get(k) for k in written} == written


def test_failover_prints_the_outcome(ctl: Ctl, servers: ServerFactory) -> None:
    _, created = form(servers, 2, 1)
    result = ctl("failover", created[2].address)
    assert result.code == 0, result.err
    assert f"promoted: {created[2].address} ({created[2].id[:8]}) is now a primary" in result.out
    assert f"the old primary {created[0].address}" in result.out
    assert f"is now a replica of {created[2].address}" in result.out


def test_failover_on_a_primary_is_refused(ctl: Ctl, servers: ServerFactory) -> None:
    nodes, created = form(servers, 2, 1)
    before = roles(nodes[0].address)

    result = ctl("failover", created[0].address)
    assert result.code == 1
    assert f"{created[0].address} is a primary; only a replica can fail over" in result.err
    assert f"run it on one of its replicas: {created[2].address}" in result.err
    assert result.out == ""
    assert roles(nodes[0].address) == before


def test_failover_needs_force_when_the_primary_is_down(ctl: Ctl, servers: ServerFactory) -> None:
    # A long node timeout keeps the cluster from failing over on its own during the test.
    nodes, created = form(servers, 3, 1, "--node-timeout", "60000")
    nodes[0].kill()
    replica = created[3].address

    graceful = ctl("failover", replica, "--timeout", "1", "--json")
    assert graceful.code == 1
    outcome = json.loads(graceful.out)
    assert outcome["promoted"] is False
    assert outcome["old_primary"]["role"] is None
    assert "cannot reach the node" in outcome["old_primary"]["error"]
    assert "was not promoted within 1s" in graceful.err and "use --force" in graceful.err

    forced = ctl("failover", replica, "--force")
    assert forced.code == 0, forced.err
    assert "promoted" in forced.out
    assert f"the old primary {created[0].address}" in forced.out
    assert "could not be asked" in forced.out
    assert roles(nodes[1].address)[created[3].id] == ("primary", None)


def test_failover_of_a_standalone_node(ctl: Ctl, servers: ServerFactory) -> None:
    node = servers.start()
    result = ctl("failover", node.address)
    assert result.code == 1
    assert "is not in cluster mode" in result.err
