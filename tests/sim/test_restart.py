"""Restart: a node restored from its node file keeps its identity and rejoins.

The node file is ``snapshot()`` of the state machine, taken here at the moment
of the kill (the runtime saves it whenever the configuration changes, so that
is what a crashed node finds on disk).

Rejoining takes two things, both bounded:

- the others lift their PFAIL on the node with its first PONG, and they keep
  resending pings to a suspected or failed node every node_timeout/5;
- a FAIL mark on a primary that owns slots is only lifted once it is
  2 x node_timeout old (Redis's rule: a replica may be taking over).

So a node restarted right after the verdict is back in every view within
2 x node_timeout + node_timeout/5 + 2 ticks of the last verdict, and a node
restarted before anyone marked it FAIL within node_timeout/5 + 2 ticks.
"""

from __future__ import annotations

import random

import pytest

from slotcache_server.membership.cluster_state import WRITABLE_DELAY_MS
from slotcache_server.membership.model import FAIL, MembershipConfig
from slotcache_server.membership.snapshot import restore, snapshot
from slotcache_server.membership.step import NodeFailed
from tests.sim.simhelpers import all_see, formed, none_see_failing

NT = 1_000
CONFIG = MembershipConfig(node_timeout_ms=NT)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_restored_node_keeps_its_identity_and_rejoins(seed):
    net = formed(10, CONFIG, seed)
    victim = net.nodes[4]
    before = victim.membership
    node_file = snapshot(before)
    net.kill(victim.index)
    others = [node for node in net.nodes if node is not victim]
    assert net.wait_for(lambda: all_see(others, [victim], FAIL), 3 * NT, 10) is not None

    restored = restore(node_file, CONFIG, victim.address, net.now, random=random.Random(seed))
    assert restored.id == before.id
    assert restored.current_epoch == before.current_epoch
    assert restored.last_vote_epoch == before.last_vote_epoch
    assert restored.myself.config_epoch == before.myself.config_epoch
    assert set(restored.nodes) == set(before.nodes)
    for node_id, peer in before.nodes.items():
        again = restored.nodes[node_id]
        assert (again.address, again.config_epoch, again.is_primary) == (
            peer.address,
            peer.config_epoch,
            peer.is_primary,
        )
    assert restored.slots.snapshot() == before.slots.snapshot()
    assert snapshot(restored) == node_file

    last_verdict = max(node.membership.nodes[victim.id].fail_time for node in others)
    net.restart(victim.index, restored)
    bound = last_verdict + 2 * NT + CONFIG.resend_ms + 2 * CONFIG.tick_ms - net.now
    at = net.wait_for(net.converged, bound, step_ms=10)
    assert at is not None, "the restored node did not rejoin in time"
    assert victim.membership is restored
    assert restored.ok
    assert none_see_failing(net.nodes, net.nodes)
    assert len(restored.nodes) == 10


def test_a_quick_restart_rejoins_before_anyone_marks_fail():
    net = formed(10, CONFIG, seed=3)
    victim = net.nodes[6]
    node_file = snapshot(victim.membership)
    net.kill(victim.index)
    killed_at = net.now
    net.run_for(NT // 2)
    restored = restore(node_file, CONFIG, victim.address, net.now, random=random.Random(3))
    net.restart(victim.index, restored)
    restarted_at = net.now
    # A restored node keeps its state at fail for the writable delay, so it can
    # hear of configuration changes it missed before it serves again.
    writable_delay = min(WRITABLE_DELAY_MS, NT)
    bound = CONFIG.resend_ms + 2 * CONFIG.tick_ms + writable_delay
    at = net.wait_for(net.converged, bound, step_ms=10)
    assert at is not None
    assert at - restarted_at >= writable_delay - CONFIG.tick_ms
    net.run_for(3 * NT)
    assert net.converged()
    assert not [e for e in net.events if isinstance(e.event, NodeFailed) and e.time >= killed_at], (
        "a node back within node_timeout/2 must not be marked FAIL"
    )


def test_replies_meant_for_the_previous_life_are_dropped():
    """A PONG to a ping sent before the kill must not reach the restarted node."""
    net = formed(3, CONFIG, seed=4)
    a, b = net.nodes[0], net.nodes[1]
    node_file = snapshot(a.membership)
    a.runtime.announce()  # pings in flight...
    net.kill(a.index)
    restored = restore(node_file, CONFIG, a.address, net.now, random=random.Random(4))
    net.restart(a.index, restored, announce=False)  # ...and a new life at once
    net.run_for(2 * net.latency_ms)
    assert restored.nodes[b.id].pong_received == 0
