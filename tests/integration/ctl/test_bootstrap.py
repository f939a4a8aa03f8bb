"""``clusterctl bootstrap`` on real nodes: forming, growing, a lost volume, and proxies."""

from __future__ import annotations

from slotcache.ctl.bootstrap import step, step_proxy
from slotcache.ctl.formation import Create, Join, Layout, Meet, Rebalance, Wait
from slotcache.ctl.main import main as clusterctl
from slotcache.ctl.rpc import fetch_state
from tests.support.ctl import start_nodes
from tests.support.nodes import eventually
from tests.support.processes import ServerFactory

LAYOUT = Layout(primaries=2, replicas=1)
TIMEOUT = 5.0
FORMED = Wait("the cluster is formed")


def failed_over(address: str, node_id: str) -> bool:
    state = fetch_state(address, TIMEOUT)
    flags = next(p.flags for p in state.peers if p.node.id == node_id)
    return state.cluster_ok and "fail" in flags


def run_round(me: str, addresses: list[str]) -> object:
    return step(me, addresses, LAYOUT, TIMEOUT, clusterctl)


def test_forms_once_grows_and_takes_back_a_pod_that_lost_its_volume(
    servers: ServerFactory,
) -> None:
    nodes = start_nodes(servers, 4, "--node-timeout", "1000")
    addresses = [n.address for n in nodes]
    # Every pod runs the rule; only ordinal 0 acts, and only once all four answer.
    for me in addresses[1:]:
        assert run_round(me, addresses) == Wait("ordinal 0 forms the cluster")
    assert isinstance(run_round(addresses[0], addresses), Create)
    assert run_round(addresses[0], addresses) == FORMED
    assert clusterctl(["check", addresses[0]]) == 0

    # Idempotent: pod 0 restarted with its node file is a member; nothing is formed again.
    ids = [fetch_state(a, TIMEOUT).myself for a in addresses]
    nodes[0].stop()
    nodes[0].start()
    assert eventually(lambda: fetch_state(addresses[0], TIMEOUT).cluster_ok, timeout=10)
    assert run_round(addresses[0], addresses) == FORMED
    assert [fetch_state(a, TIMEOUT).myself for a in addresses] == ids

    # Scale out by two: a primary, its replica, then the slots.
    grown = [*addresses, *(n.address for n in start_nodes(servers, 2, "--node-timeout", "1000"))]
    assert run_round(grown[0], grown) == Join(grown[4], grown[0], None)
    new_primary = fetch_state(grown[4], TIMEOUT).myself
    assert run_round(grown[0], grown) == Join(grown[5], grown[0], new_primary)
    assert run_round(grown[0], grown) == Rebalance(grown[0])
    assert run_round(grown[0], grown) == FORMED
    state = fetch_state(grown[0], TIMEOUT)
    owners = {p.node.id for p in state.peers if p.node.slots}
    assert len(owners) == 3 and new_primary in owners
    assert clusterctl(["check", grown[0]]) == 0

    # A pod whose volume is lost comes back fresh under its old name: it is added back.
    lost = grown.index(nodes[1].address)
    nodes[1].kill()
    (nodes[1].data_dir / "nodes.json").unlink()
    assert eventually(lambda: failed_over(grown[0], ids[lost]), timeout=15, interval=0.1)
    nodes[1].start()
    # Rounds repeat, as the sidecar's loop does: a peer may still be backing off from
    # the dead address for a moment, which fails one add-node.
    actions: list[object] = []
    assert eventually(
        lambda: actions.append(run_round(grown[0], grown)) or actions[-1] == FORMED,
        timeout=20,
        interval=0.5,
    )
    joins = [a for a in actions if isinstance(a, Join)]
    assert joins and all(a.address == grown[lost] and a.replica_of for a in joins)
    assert clusterctl(["check", grown[0]]) == 0
    assert fetch_state(grown[lost], TIMEOUT).myself != ids[lost]


def test_a_proxy_waits_for_the_cluster_then_has_it_meet_the_proxy(servers: ServerFactory) -> None:
    nodes = start_nodes(servers, 2, "--node-timeout", "1000")
    addresses = [n.address for n in nodes]
    (proxy,) = start_nodes(servers, 1, "--node-timeout", "1000", "--proxy", "yes")
    # Nothing is formed yet: the proxy's sidecar waits.
    assert step_proxy(proxy.address, addresses, TIMEOUT) == Wait("no formed cluster answers yet")
    assert clusterctl(["create", "--replicas", "1", *addresses]) == 0
    assert step_proxy(proxy.address, addresses, TIMEOUT) == Meet(proxy.address, addresses[0])
    proxy_id = fetch_state(proxy.address, TIMEOUT).myself

    def known_as_proxy() -> bool:
        peers = fetch_state(addresses[1], TIMEOUT).peers
        return any(p.node.id == proxy_id and "proxy" in p.flags for p in peers)

    assert eventually(known_as_proxy, timeout=10)
    assert step_proxy(proxy.address, addresses, TIMEOUT) == Wait("the proxy is in the cluster")
    assert all(
        not p.node.slots for p in fetch_state(addresses[0], TIMEOUT).peers if p.node.id == proxy_id
    )
