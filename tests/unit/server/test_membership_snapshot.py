"""The node file: snapshot() and restore() of the membership state machine."""

from __future__ import annotations

import json
import random

import pytest

from slotcache_server.membership.cluster_state import WRITABLE_DELAY_MS
from slotcache_server.membership.machine import Membership, Remembered
from slotcache_server.membership.model import FAIL, PFAIL, REPLICA, Address, MembershipConfig, Peer
from slotcache_server.membership.snapshot import FORMAT_VERSION, restore, snapshot

CONFIG = MembershipConfig(node_timeout_ms=1_000)
ME = Address("10.0.0.1", 7000, 17000)


def peer_id(n: int) -> bytes:
    return bytes([n]) * 20


def sample() -> Membership:
    """A primary with two slot ranges, another primary, and a replica of it."""
    other = Peer(id=peer_id(2), address=Address("10.0.0.2", 7001, 17001), config_epoch=5)
    replica = Peer(
        id=peer_id(3),
        address=Address("10.0.0.3", 7002, 17002),
        flags=REPLICA,
        primary_id=other.id,
        config_epoch=5,
    )
    known = Remembered(
        current_epoch=7,
        last_vote_epoch=6,
        peers=(other, replica),
        slots={peer_id(1): [*range(0, 100), *range(200, 300)], other.id: range(100, 200)},
    )
    me = Peer(id=peer_id(1), address=ME, config_epoch=3)
    return Membership(CONFIG, me, 100, random=random.Random(1), remembered=known)


def test_snapshot_is_plain_json():
    data = snapshot(sample())
    assert json.loads(json.dumps(data)) == data
    assert data["version"] == FORMAT_VERSION
    assert data["myself"] == peer_id(1).hex()
    nodes = {node["id"]: node for node in data["nodes"]}
    assert nodes[peer_id(1).hex()]["slots"] == [[0, 99], [200, 299]]
    assert nodes[peer_id(2).hex()]["slots"] == [[100, 199]]
    assert nodes[peer_id(3).hex()]["role"] == "replica"
    assert nodes[peer_id(3).hex()]["primary"] == peer_id(2).hex()


def test_restore_round_trips_everything_persistent():
    original = sample()
    data = snapshot(original)
    restored = restore(data, CONFIG, ME, 5_000, random=random.Random(2))
    assert restored.id == original.id
    assert restored.current_epoch == 7
    assert restored.last_vote_epoch == 6
    assert restored.myself.config_epoch == 3
    assert restored.myself.address == ME
    assert set(restored.nodes) == set(original.nodes)
    for node_id, peer in original.nodes.items():
        again = restored.nodes[node_id]
        assert again.address == peer.address
        assert again.config_epoch == peer.config_epoch
        assert again.primary_id == peer.primary_id
        assert again.is_primary == peer.is_primary
    assert restored.nodes[peer_id(3)].flags & REPLICA
    assert restored.slots.snapshot() == original.slots.snapshot()
    assert snapshot(restored) == data
    # Freshly loaded from disk: nothing to write back until something changes.
    assert not restored.tick(5_100).persist


def test_liveness_is_not_persisted():
    original = sample()
    original.nodes[peer_id(2)].flags |= FAIL
    original.nodes[peer_id(3)].flags |= PFAIL
    original.nodes[peer_id(2)].fail_reports[peer_id(1)] = 50
    restored = restore(snapshot(original), CONFIG, ME, 5_000)
    for peer in restored.peers():
        assert not peer.failing
        assert not peer.fail_reports
        assert peer.ping_sent == 0


def test_restore_takes_the_address_we_listen_on_now():
    moved = Address("10.9.9.9", 7100, 17100)
    restored = restore(snapshot(sample()), CONFIG, moved, 0)
    assert restored.myself.address == moved
    assert restored.nodes[peer_id(2)].address == Address("10.0.0.2", 7001, 17001)


def test_a_restored_single_node_cluster_is_ok_once_the_writable_delay_passed():
    """A restarted node waits min(WRITABLE_DELAY_MS, node timeout) to hear of changes it missed."""
    m = Membership(CONFIG, Peer(id=peer_id(1), address=ME), 0)
    assert m.set_config_epoch(1).persist
    assert m.add_slots(range(16384)).persist
    m.tick(100)
    assert m.ok
    restored = restore(snapshot(m), CONFIG, ME, 200)
    restored.tick(300)
    assert not restored.ok
    restored.tick(200 + min(WRITABLE_DELAY_MS, CONFIG.node_timeout_ms))
    assert restored.ok


def test_restore_refuses_other_versions():
    data = snapshot(sample())
    data["version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="version"):
        restore(data, CONFIG, ME, 0)


def test_restore_refuses_a_file_without_this_node():
    data = snapshot(sample())
    data["nodes"] = [node for node in data["nodes"] if node["id"] != data["myself"]]
    with pytest.raises(ValueError, match="does not describe this node"):
        restore(data, CONFIG, ME, 0)
