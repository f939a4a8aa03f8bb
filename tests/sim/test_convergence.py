"""A created cluster converges to one view, and stays there while idle.

Convergence is driven by gossip alone: after ``create``, node 0 knows
everyone and everyone else knows node 0. Each probe carries about a tenth of
the sender's nodes (with their slot claims), so every node learns the rest in
a few dozen probe intervals. The bound asserted below (60 s of simulated time
at node_timeout 1000 ms, i.e. 240 probe intervals of 250 ms) is generous:
these seeds converge in about 20 s. A regression that stalls gossip, loses
slot claims, or leaves a node behind fails it.
"""

from __future__ import annotations

import pytest

from slotcache.contract import SLOT_COUNT, split_slots
from slotcache_server.membership.model import MembershipConfig
from slotcache_server.membership.step import NodeFailed
from slotcache_server.simnet import create_cluster
from tests.sim.simhelpers import none_see_failing

NT = 1_000
CONFIG = MembershipConfig(node_timeout_ms=NT)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fifty_nodes_converge_to_one_view(seed):
    n = 50
    net = create_cluster(n, CONFIG, seed=seed)
    at = net.wait_for(net.converged, 60_000, step_ms=250)
    assert at is not None, "50 nodes did not converge within 60 s"

    ids = {node.id for node in net.nodes}
    expected_owner = [b""] * SLOT_COUNT
    for node, (start, end) in zip(net.nodes, split_slots(n), strict=True):
        expected_owner[start : end + 1] = [node.id] * (end - start + 1)
    for node in net.nodes:
        m = node.membership
        assert set(m.nodes) == ids
        assert m.ok
        assert m.size == n
        assert m.slots.snapshot() == expected_owner
        # Everyone agrees on everyone's config epoch (1..n as created).
        assert sorted(p.config_epoch for p in m.nodes.values()) == list(range(1, n + 1))
        assert m.current_epoch == n
    assert none_see_failing(net.nodes, net.nodes)
    assert not any(isinstance(e.event, NodeFailed) for e in net.events)


def test_an_idle_cluster_stays_healthy_despite_jitter_and_loss():
    """No false suspicion: with 2% loss and up to 40 ms jitter, nobody is ever PFAIL.

    A peer becomes PFAIL only if every ping and resend (one every
    node_timeout/5) goes unanswered for node_timeout, so isolated losses must
    never be enough. Checked every 50 ms for a minute of simulated time.
    """
    net = create_cluster(20, CONFIG, seed=11, jitter_ms=40, loss=0.02)
    assert net.wait_for(net.converged, 60_000, step_ms=250) is not None
    dropped_before = net.dropped
    for _ in range(60_000 // 50):
        net.run_for(50)
        assert none_see_failing(net.nodes, net.nodes), f"false suspicion at {net.now} ms"
    assert net.dropped > dropped_before  # the loss was real
    assert not any(isinstance(e.event, NodeFailed) for e in net.events)
    assert all(node.membership.ok for node in net.nodes)


def test_a_one_node_cluster_is_ok_on_its_own():
    net = create_cluster(1, CONFIG, seed=1)
    net.run_for(1_000)
    m = net.nodes[0].membership
    assert m.ok
    assert m.size == 1
    assert m.slots.unassigned() == 0
