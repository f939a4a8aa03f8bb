"""Proxies in a simulated cluster: they join, never count, and disappear when they die.

Four proxies beside three primaries are more nodes than primaries: if they
counted towards any majority, a failover after one primary dies (two of
three primaries left) could not reach it, and failure detection could not
either.
"""

from __future__ import annotations

from slotcache_server.cluster_runtime import take_role
from slotcache_server.membership.model import FAIL, MembershipConfig
from slotcache_server.membership.proxies import FORGET_AFTER_TIMEOUTS
from slotcache_server.simnet import SimNetwork, SimNode, create_cluster

NT = 1000
CONFIG = MembershipConfig(node_timeout_ms=NT)
PROXIES = 4


def with_proxies(seed: int) -> tuple[SimNetwork, list[SimNode]]:
    """3 primaries with a replica each, and PROXIES proxies added through node 0, converged."""
    net = create_cluster(3, CONFIG, seed=seed, replicas=1)
    proxies = []
    for _ in range(PROXIES):
        node = net.add_node()
        take_role(node.membership, proxy=True)
        net.meet(0, node.index)
        proxies.append(node)
    assert net.wait_for(net.converged, 60_000, step_ms=100) is not None
    return net, proxies


def test_every_node_knows_the_proxies_as_proxies_and_they_do_not_count():
    net, proxies = with_proxies(seed=31)
    for node in net.nodes:
        m = node.membership
        assert m.size == 3
        assert all(m.nodes[p.id].is_proxy for p in proxies)
        assert not any(m.slots.count(p.id) for p in proxies)


def test_a_replica_is_promoted_with_more_proxies_than_primaries_present():
    net, proxies = with_proxies(seed=32)
    primary, replica = net.nodes[0], net.nodes[3]
    assert replica.membership.myself.primary_id == primary.id
    slot = primary.membership.slots.slots_of(primary.id)[0]
    net.kill(primary.index)
    killed_at = net.now

    def promoted() -> bool:
        return all(n.membership.slots.owner(slot) == replica.id for n in net.alive())

    at = net.wait_for(promoted, 10 * NT, step_ms=10)
    assert at is not None, "no replica took over while proxies were present"
    assert at - killed_at <= 2 * NT + 2 * (NT // 10) + 300
    assert all(p.membership.last_vote_epoch == 0 for p in proxies), "a proxy voted"
    assert all(p.membership.nodes[primary.id].flags & FAIL for p in proxies)
    assert not any(n.membership.slots.count(p.id) for n in net.alive() for p in proxies)


def test_a_dead_proxy_is_forgotten_by_every_node_after_the_bound():
    net, proxies = with_proxies(seed=33)
    dead = proxies[0]
    net.kill(dead.index)
    killed_at = net.now

    def forgotten() -> bool:
        return all(dead.id not in n.membership.nodes for n in net.alive())

    at = net.wait_for(forgotten, 20 * NT, step_ms=50)
    assert at is not None, "the dead proxy lingered"
    # FAIL within about 2 node timeouts, then the bound.
    assert (FORGET_AFTER_TIMEOUTS) * NT < at - killed_at <= (FORGET_AFTER_TIMEOUTS + 3) * NT
    # Once gone it stays gone: nobody gossips it back.
    net.run_for(5 * NT)
    assert forgotten()
    assert net.converged()


def test_a_proxy_that_leaves_is_forgotten_at_once():
    net, proxies = with_proxies(seed=34)
    leaving = proxies[1]
    leaving.runtime.apply(leaving.membership.leave(net.now))
    net.kill(leaving.index)
    net.run_for(50)
    assert all(leaving.id not in n.membership.nodes for n in net.alive())
    net.run_for(3 * NT)
    assert all(leaving.id not in n.membership.nodes for n in net.alive())
    assert net.converged()
