"""Which replica a stopping primary hands its slots to: an in-sync one that has the most."""

from __future__ import annotations

from slotcache_server.handoff import pick_replica
from slotcache_server.keyspace import Keyspace
from slotcache_server.replication.backlog import Backlog
from slotcache_server.replication.primary import PrimaryReplication, ReplicaLink


def primary_with(*links: ReplicaLink) -> PrimaryReplication:
    primary = PrimaryReplication(Keyspace(), Backlog(1 << 20))
    primary.links = {link.replica_id: link for link in links}
    return primary


def test_the_in_sync_replica_with_the_highest_acknowledged_offset_is_chosen() -> None:
    primary = primary_with(
        ReplicaLink(b"a", acked=90, syncing=False),
        ReplicaLink(b"b", acked=100, syncing=False),
        ReplicaLink(b"c", acked=500, syncing=True),  # still in its full sync
    )
    assert pick_replica(primary) == b"b"


def test_no_in_sync_replica_means_no_handoff() -> None:
    assert pick_replica(primary_with()) is None
    assert pick_replica(primary_with(ReplicaLink(b"a", syncing=True))) is None
