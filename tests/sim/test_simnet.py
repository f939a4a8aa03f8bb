"""The simulator itself: latency, replies, kills, partitions, loss, byte accounting, determinism.

The membership tests below trust these mechanics, so they are checked on their
own first, with expectations computed independently of the simulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slotcache.contract import split_slots
from slotcache_server.membership.messages import PONG
from slotcache_server.membership.model import MembershipConfig
from slotcache_server.membership_runtime import Transport
from slotcache_server.simnet import SimNetwork, create_cluster

# A node timeout so long that nothing is ever suspected, and probes start late,
# so hand-made exchanges can be observed on their own.
QUIET = MembershipConfig(node_timeout_ms=1_000_000, random_ping_ms=1_000)


def pair(latency_ms: int = 1, jitter_ms: int = 0, seed: int = 0) -> SimNetwork:
    net = SimNetwork(QUIET, seed=seed, latency_ms=latency_ms, jitter_ms=jitter_ms)
    for i, (start, end) in enumerate(split_slots(2)):
        node = net.add_node()
        node.runtime.set_config_epoch(i + 1)
        node.runtime.add_slots(range(start, end + 1))
    net.meet(0, 1)
    return net


def test_create_cluster_sets_up_like_clusterctl():
    net = create_cluster(5, QUIET, seed=1)
    assert net.now == 0
    for i, node in enumerate(net.nodes):
        m = node.membership
        assert m.myself.config_epoch == i + 1
        start, end = split_slots(5)[i]
        assert m.slot_ranges(m.id) == [(start, end)]
    # Node 0 met everyone; the others know node 0, plus whatever its MEET gossiped
    # (node 1 was met first, when node 0 knew nobody else).
    assert len(net.nodes[0].membership.nodes) == 5
    assert all(net.nodes[0].id in node.membership.nodes for node in net.nodes[1:])
    assert len(net.nodes[1].membership.nodes) == 2
    assert len({node.id for node in net.nodes}) == 5


def test_reply_comes_back_after_two_latencies():
    net = pair(latency_ms=7)
    net.run_until(100)
    a, b = net.nodes
    a.runtime.announce()
    net.run_until(113)
    assert a.membership.nodes[b.id].pong_received < 114
    net.run_until(114)
    assert a.membership.nodes[b.id].pong_received == 114


def test_jitter_stays_within_its_bound_and_varies():
    arrivals = set()
    for seed in range(8):
        net = pair(latency_ms=5, jitter_ms=10, seed=seed)
        net.run_until(100)
        a, b = net.nodes
        a.runtime.announce()
        net.run_until(200)
        arrival = a.membership.nodes[b.id].pong_received - 100
        assert 10 <= arrival <= 30
        arrivals.add(arrival)
    assert len(arrivals) > 1


def test_bytes_are_counted_to_the_sender_replies_included():
    net = pair()
    net.run_until(100)
    net.reset_traffic()
    a, b = net.nodes
    replies = []
    receive = b.membership.receive

    def spy(message, now, inputs):
        step = receive(message, now, inputs)
        replies.append(step.reply)
        return step

    b.membership.receive = spy  # type: ignore[method-assign]
    envelopes = a.membership.announce(net.now).messages
    ping_size = envelopes[0].message.ByteSize()
    net.send(0, envelopes)
    assert (a.bytes_sent, a.messages_sent) == (ping_size, 1)
    net.run_until(105)
    assert len(replies) == 1
    assert replies[0].type == PONG
    assert (b.bytes_sent, b.messages_sent) == (replies[0].ByteSize(), 1)
    assert net.total_bytes() == ping_size + replies[0].ByteSize()
    assert sum(t.bytes for t in net.traffic.values()) == net.total_bytes()


def test_a_killed_node_neither_sends_nor_receives():
    config = MembershipConfig(node_timeout_ms=1_000)
    net = create_cluster(4, config, seed=2)
    assert net.wait_for(net.converged, 30_000) is not None
    victim = net.nodes[3]
    seen_by_victim = {p.id: p.pong_received for p in victim.membership.peers()}
    net.kill(3)
    net.reset_traffic()
    dropped = net.dropped
    net.run_for(10_000)
    assert victim.bytes_sent == 0
    assert all(node.bytes_sent > 0 for node in net.nodes[:3])
    # Its state machine did not run: nothing it knows has changed.
    assert {p.id: p.pong_received for p in victim.membership.peers()} == seen_by_victim
    assert net.dropped > dropped
    # The others noticed.
    assert all(n.membership.nodes[victim.id].failing for n in net.nodes[:3])


def test_partitions_drop_only_messages_across_sides():
    config = MembershipConfig(node_timeout_ms=1_000)
    net = create_cluster(4, config, seed=3)
    assert net.wait_for(net.converged, 30_000) is not None
    net.partition([0, 1])
    cut_at = net.now
    assert not net.reachable(0, 2)
    assert net.reachable(0, 1)
    assert net.reachable(2, 3)
    net.run_for(3_000)
    view0 = net.nodes[0].membership.nodes
    view2 = net.nodes[2].membership.nodes
    # Within a side, nodes still hear from each other; across, not at all.
    assert view0[net.nodes[1].id].pong_received > cut_at + 1_000
    assert view2[net.nodes[3].id].pong_received > cut_at + 1_000
    assert view0[net.nodes[2].id].pong_received <= cut_at + 2
    assert view2[net.nodes[0].id].pong_received <= cut_at + 2
    net.heal()
    healed_at = net.now
    net.run_for(1_000)
    assert view0[net.nodes[2].id].pong_received > healed_at


def test_meet_across_a_partition_fails_and_changes_nothing():
    net = SimNetwork(QUIET, seed=4)
    net.add_node()
    net.add_node()
    net.partition([0])
    with pytest.raises(ConnectionError):
        net.meet(0, 1)
    assert len(net.nodes[0].membership.nodes) == 1
    assert len(net.nodes[1].membership.nodes) == 1
    net.heal()
    net.meet(0, 1)
    assert len(net.nodes[1].membership.nodes) == 2


def test_partition_refuses_a_node_in_two_groups():
    net = create_cluster(3, QUIET)
    with pytest.raises(ValueError):
        net.partition([0, 1], [1, 2])


def test_loss_drops_some_messages_but_not_all():
    config = MembershipConfig(node_timeout_ms=1_000)
    net = create_cluster(5, config, seed=5, loss=0.2)
    net.run_for(20_000)
    assert net.dropped > 0
    assert net.delivered > 3 * net.dropped


def _fingerprint(seed: int) -> tuple[object, ...]:
    net = create_cluster(12, MembershipConfig(node_timeout_ms=1_000), seed=seed, jitter_ms=3)
    net.run_for(5_000)
    net.kill(4)
    net.run_for(5_000)
    return (
        tuple(node.bytes_sent for node in net.nodes),
        tuple((e.time, e.node, e.event) for e in net.events),
        net.delivered,
    )


def test_runs_are_a_function_of_the_seed():
    first = _fingerprint(7)
    assert _fingerprint(7) == first
    assert _fingerprint(8) != first


FINGERPRINT = """
from tests.sim.test_simnet import _fingerprint
print(repr(_fingerprint(7)))
"""


def test_runs_do_not_depend_on_the_hash_seed():
    """Same seed, different processes with different PYTHONHASHSEED: the same run.

    Iterating a set of bytes follows the per-process hash seed; nothing on the
    simulated path may depend on it.
    """
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", FINGERPRINT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_the_transport_is_the_bus_transport_protocol():
    net = pair()
    transport: Transport = net.transport(0)
    a, b = net.nodes
    net.run_until(100)
    transport.send_all(a.membership.announce(net.now).messages)
    net.run_until(102)
    assert a.membership.nodes[b.id].pong_received == 102


def test_restart_must_keep_the_address():
    net = pair()
    other = SimNetwork(QUIET, seed=9)
    other.add_node()
    other.add_node()
    stranger = other.nodes[1].membership
    net.kill(0)
    with pytest.raises(ValueError):
        net.restart(0, stranger)
