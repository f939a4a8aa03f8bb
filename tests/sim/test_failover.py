"""Replica promotion in simulation: elections, votes, and the old primary's return."""

from __future__ import annotations

from slotcache_server.membership.failover import FailoverMode
from slotcache_server.membership.model import FAIL, PRIMARY, REPLICA, MembershipConfig
from slotcache_server.membership.step import RoleChanged, SlotsLost, StateChanged
from slotcache_server.simnet import SimNetwork, SimNode, create_cluster

NT = 1000
CONFIG = MembershipConfig(node_timeout_ms=NT)


def formed_with_replicas(seed: int, primaries: int = 3, replicas: int = 1) -> SimNetwork:
    net = create_cluster(primaries, CONFIG, seed=seed, replicas=replicas)
    assert net.wait_for(net.converged, 60_000, step_ms=100) is not None
    return net


def one_primary_per_slot(net: SimNetwork) -> bool:
    """Every live node maps every slot to the same primary, and that node says it is one."""
    alive = net.alive()
    reference = alive[0].membership.slots.snapshot()
    if any(node.membership.slots.snapshot() != reference for node in alive):
        return False
    by_id = {node.id: node for node in alive}
    owners = {owner for owner in reference if owner is not None}
    return all(owner in by_id and by_id[owner].membership.myself.is_primary for owner in owners)


def test_a_replica_takes_over_a_killed_primary_within_the_bound():
    net = formed_with_replicas(seed=21)
    primary, replica = net.nodes[0], net.nodes[3]
    assert replica.membership.myself.primary_id == primary.id
    slots = primary.membership.slots.slots_of(primary.id)
    net.kill(primary.index)
    killed_at = net.now

    def promoted() -> bool:
        return all(node.membership.slots.owner(slots[0]) == replica.id for node in net.alive())

    at = net.wait_for(promoted, 10 * NT, step_ms=10)
    assert at is not None, "no replica took over"
    elapsed = at - killed_at
    # Detection within 2 x node_timeout (FAIL), then a rank-0 delay of at most
    # 2 x node_timeout/10, plus a few message exchanges.
    assert elapsed <= 2 * NT + 2 * (NT // 10) + 300, elapsed
    me = replica.membership.myself
    assert me.is_primary and not me.flags & REPLICA
    assert me.config_epoch > max(n.membership.myself.config_epoch for n in net.nodes[1:3])
    assert any(
        isinstance(r.event, RoleChanged) and r.event.primary == b"" and r.node == replica.index
        for r in net.events
    )
    assert net.wait_for(lambda: one_primary_per_slot(net) and net.converged(), 5 * NT, 50)


def test_the_old_primary_returns_as_a_replica_of_the_winner():
    net = formed_with_replicas(seed=22)
    old, replica = net.nodes[1], net.nodes[4]
    snapshot_ok = net.wait_for(net.converged, 1000, 50)
    assert snapshot_ok is not None
    net.partition([old.index])
    isolated_at = net.now
    # The isolated old primary cannot reach a majority: within node_timeout plus
    # one refresh interval (node_timeout/2) it puts its cluster state to fail,
    # which stops it taking writes.
    at = net.wait_for(lambda: not old.membership.ok, 2 * NT, 10)
    assert at is not None and at - isolated_at <= NT + NT // 2 + 2 * CONFIG.tick_ms
    assert net.wait_for(lambda: replica.membership.myself.is_primary, 10 * NT, 10)
    net.heal()
    assert net.wait_for(lambda: old.membership.myself.primary_id == replica.id, 5 * NT, 10)
    assert old.membership.myself.flags & REPLICA
    assert net.wait_for(lambda: one_primary_per_slot(net) and net.converged(), 10 * NT, 50)


def test_each_primary_votes_once_per_epoch():
    net = formed_with_replicas(seed=23, replicas=2)
    primary = net.nodes[0]
    net.kill(primary.index)
    assert net.wait_for(
        lambda: (
            any(n.membership.myself.is_primary and n.index >= 3 for n in net.alive())
            and all(n.membership.nodes[primary.id].flags & FAIL for n in net.alive())
        ),
        10 * NT,
        10,
    )
    winners = [n for n in net.alive() if n.index >= 3 and n.membership.myself.is_primary]
    assert len(winners) == 1
    voters = [n for n in net.alive() if n.index < 3]
    for voter in voters:
        assert voter.membership.last_vote_epoch <= voter.membership.current_epoch
    assert net.wait_for(lambda: one_primary_per_slot(net), 5 * NT, 50)


def test_manual_failover_promotes_the_replica_without_a_failure():
    net = formed_with_replicas(seed=24)
    primary, replica = net.nodes[2], net.nodes[5]
    replica.runtime.failover(FailoverMode.GRACEFUL)
    # The primary pauses writes until the replica took over.
    assert net.wait_for(lambda: primary.membership.writes_paused(net.now), NT, 5)
    assert net.wait_for(lambda: replica.membership.myself.is_primary, 3 * NT, 10)
    assert net.wait_for(lambda: primary.membership.myself.primary_id == replica.id, 3 * NT, 10)
    assert not primary.membership.writes_paused(net.now)
    assert net.wait_for(lambda: one_primary_per_slot(net) and net.converged(), 5 * NT, 50)


def test_takeover_needs_no_votes():
    net = formed_with_replicas(seed=25)
    primary, replica = net.nodes[0], net.nodes[3]
    net.partition([primary.index, replica.index], [1, 2, 4, 5])
    replica.runtime.failover(FailoverMode.TAKEOVER)
    assert replica.membership.myself.is_primary
    assert replica.membership.myself.flags & PRIMARY
    net.heal()
    assert net.wait_for(lambda: one_primary_per_slot(net) and net.converged(), 10 * NT, 50)
    assert primary.membership.myself.primary_id == replica.id


def stood_still(seed: int) -> tuple[SimNetwork, SimNode, SimNode]:
    """Stop primary 0 like a stopped process until its replica took over; return them."""
    net = formed_with_replicas(seed=seed)
    old, replica = net.nodes[0], net.nodes[3]
    net.kill(old.index)  # it neither runs nor hears anything
    assert net.wait_for(lambda: replica.membership.myself.is_primary, 10 * NT, 10)
    net.run_for(NT)
    return net, old, replica


def test_a_primary_that_stood_still_follows_the_winner_when_it_resumes():
    net, old, replica = stood_still(seed=25)
    # The same state, later. Here the first thing it hears is a peer's UPDATE
    # about the winner, which it still knew as a replica.
    net.restart(old.index, old.membership, announce=False)
    assert net.wait_for(lambda: old.membership.myself.primary_id == replica.id, 5 * NT, 10)
    assert net.wait_for(lambda: one_primary_per_slot(net) and net.converged(), 5 * NT, 50)


def test_a_primary_that_stood_still_is_down_from_its_first_step():
    """Until it heard of the failover, its stale view must not let it serve the slots."""
    net, old, replica = stood_still(seed=26)
    resumed_at = net.now
    net.partition([old.index])  # so that its first step is its own tick
    net.restart(old.index, old.membership, announce=False)
    net.run_for(CONFIG.tick_ms + 1)
    assert not old.membership.ok
    net.heal()
    assert net.wait_for(lambda: old.membership.myself.primary_id == replica.id, 5 * NT, 10)
    since = [r.event for r in net.events if r.node == old.index and r.time >= resumed_at]
    assert since[0] == StateChanged(False), since
    lost = next(i for i, e in enumerate(since) if isinstance(e, SlotsLost))
    assert StateChanged(True) not in since[:lost]
    assert net.wait_for(lambda: one_primary_per_slot(net) and net.converged(), 5 * NT, 50)
