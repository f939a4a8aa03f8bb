"""The real runtime in simulation: steps are saved before they are sent, and saves are complete.

Every simulated node runs ``MembershipRuntime`` with the in-memory network as
its transport; here a few nodes also get a journal around their store and
transport, to see the order in which the runtime applies each step during a
real failover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slotcache_server.membership.failover import REPLICA_VALIDITY_FACTOR
from slotcache_server.membership.machine import Membership
from slotcache_server.membership.messages import AUTH_ACK, AUTH_REQUEST, PONG
from slotcache_server.membership.model import MembershipConfig
from slotcache_server.membership.snapshot import snapshot
from slotcache_server.membership.step import Envelope, Event, RoleChanged
from slotcache_server.membership_runtime import MembershipRuntime, NodeStore, Transport
from slotcache_server.simnet import SimNetwork, SimNode, create_cluster

NT = 1_000
CONFIG = MembershipConfig(node_timeout_ms=NT)


class Journaled:
    """Wraps a node's store and transport, recording saves (as saved) and sends in order."""

    def __init__(self, store: NodeStore, transport: Transport) -> None:
        self.entries: list[tuple[str, Any]] = []
        self._store = store
        self._transport = transport

    def save(self, membership: Membership) -> None:
        self.entries.append(("save", snapshot(membership)))
        self._store.save(membership)

    def send_all(self, envelopes: Sequence[Envelope]) -> None:
        self.entries.append(("send", [e.message for e in envelopes]))
        self._transport.send_all(envelopes)

    def event(self, event: Event) -> None:
        self.entries.append(("event", event))

    def message(self, position: int, kind: int) -> Any:
        """The message of ``kind`` in the send at ``position``."""
        return next(m for m in self.entries[position][1] if m.type == kind)

    def sent(self, kind: int) -> list[int]:
        """Positions of the sends that carried a message of ``kind``."""
        return [
            i
            for i, (what, body) in enumerate(self.entries)
            if what == "send" and any(m.type == kind for m in body)
        ]


def journal(node: SimNode) -> Journaled:
    """Run ``node`` from now on with a journal around its store and transport."""
    rt = node.runtime
    j = Journaled(rt.store, rt.transport)
    node.runtime = MembershipRuntime(rt.membership, j, j, rt.clock, j.event)
    return j


def failover(seed: int) -> tuple[SimNetwork, SimNode]:
    """Three primaries with a replica each; primary 0 is killed; return the net and its replica."""
    net = create_cluster(3, CONFIG, seed=seed, replicas=1, snapshot_saves=True)
    assert net.wait_for(net.converged, 60_000, step_ms=100) is not None
    return net, net.nodes[3]


def test_votes_and_election_epochs_are_saved_before_they_are_sent():
    net, replica = failover(seed=31)
    voters = [journal(net.nodes[1]), journal(net.nodes[2])]
    candidate = journal(replica)
    net.kill(0)
    assert net.wait_for(lambda: replica.membership.myself.is_primary, 10 * NT, 10)

    acks = [(j, i) for j in voters for i in j.sent(AUTH_ACK)]
    assert acks, "nobody voted"
    for j, i in acks:
        what, saved = j.entries[i - 1]
        assert what == "save"
        assert saved["last_vote_epoch"] == j.message(i, AUTH_ACK).header.current_epoch

    [request] = candidate.sent(AUTH_REQUEST)
    what, saved = candidate.entries[request - 1]
    epoch = candidate.message(request, AUTH_REQUEST).header.current_epoch
    assert what == "save" and saved["current_epoch"] == epoch

    # The promotion: saved as a primary, then announced, then reported to the node.
    promoted = candidate.entries.index(("event", RoleChanged(b"")))
    assert candidate.entries[promoted - 1][0] == "send"
    assert {m.type for m in candidate.entries[promoted - 1][1]} == {PONG}
    what, saved = candidate.entries[promoted - 2]
    mine = next(n for n in saved["nodes"] if n["id"] == replica.id.hex())
    assert what == "save" and mine["role"] == "primary" and mine["slots"]


def test_every_change_to_the_node_file_is_saved_by_the_step_that_makes_it():
    """Between steps, the node file of every live node equals a fresh snapshot.

    With ``snapshot_saves`` each save snapshots at once, so a step that
    changes an epoch, a slot, a role, a vote or an address without asking to
    be persisted shows here as a stale file.
    """
    net, replica = failover(seed=32)

    def run_checking_saves(duration_ms: int) -> None:
        for _ in range(duration_ms // 10):
            net.run_for(10)
            for node in net.alive():
                saved = node.store.load()
                assert saved == snapshot(node.membership), f"node {node.index} at {net.now}"

    net.kill(0)
    run_checking_saves(4 * NT)
    assert replica.membership.myself.is_primary
    taken = net.nodes[2].membership.slots.slots_of(net.nodes[2].id)[:100]
    net.nodes[1].runtime.claim_slots(taken)
    run_checking_saves(2 * NT)
    for node in net.alive():
        assert node.membership.slots.owner(0) == replica.id
        assert node.membership.slots.owner(taken[0]) == net.nodes[1].id


def test_a_replica_with_stale_data_does_not_stand_for_election():
    """The link age is an input of each step: too old, and the other replica goes first."""
    net = create_cluster(3, CONFIG, seed=33, replicas=2)
    assert net.wait_for(net.converged, 60_000, step_ms=100) is not None
    stale, fresh = net.nodes[3], net.nodes[4]
    assert stale.membership.myself.primary_id == fresh.membership.myself.primary_id
    too_old = NT * REPLICA_VALIDITY_FACTOR + 1_000 + 1
    stale.runtime.attach_replication(lambda: 0, lambda: too_old)
    net.kill(0)
    assert net.wait_for(lambda: fresh.membership.myself.is_primary, 10 * NT, 10)
    assert stale.membership.myself.is_replica
    assert stale.membership.elections.last_refusal == "replica data too old to stand for election"
