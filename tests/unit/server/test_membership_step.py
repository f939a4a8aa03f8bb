"""Each membership step returns one value, and the runtime applies it in one order.

The order is persist, then send, then events: a node file written after a
message left could forget an epoch or a vote that a peer already relies on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from slotcache_server.membership.failover import FailoverMode
from slotcache_server.membership.machine import Membership, Remembered
from slotcache_server.membership.messages import AUTH_ACK, AUTH_REQUEST, FAIL_MSG, PING, PONG
from slotcache_server.membership.model import REPLICA, Address, MembershipConfig, Peer, new_node_id
from slotcache_server.membership.snapshot import snapshot
from slotcache_server.membership.step import Envelope, Event, Inputs, NodeFailed, RoleChanged
from slotcache_server.membership_runtime import MembershipRuntime
from slotcache_server.wire import bus_pb2

CONFIG = MembershipConfig(node_timeout_ms=1_000)
ME = Address("10.0.0.1", 7000, 17000)
OTHER = Address("10.0.0.2", 7000, 17000)
MY_ID, OTHER_ID, THIRD_ID = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20


class Journal:
    """What a runtime did, in order: saves (with what was saved), sends and events."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []

    def save(self, membership: Membership) -> None:
        self.entries.append(("save", snapshot(membership)))

    def send_all(self, envelopes: Sequence[Envelope]) -> None:
        self.entries.append(("send", [e.message for e in envelopes]))

    def event(self, event: Event) -> None:
        self.entries.append(("event", event))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.entries]


def two_primaries() -> Membership:
    """This node (no slots yet) knowing one other primary that owns slots 0..99 at epoch 2."""
    other = Peer(id=OTHER_ID, address=OTHER, config_epoch=2)
    known = Remembered(current_epoch=2, peers=(other,), slots={OTHER_ID: range(100)})
    me = Peer(id=MY_ID, address=ME, config_epoch=1)
    return Membership(CONFIG, me, 0, random=random.Random(1), remembered=known)


def runtime(membership: Membership, journal: Journal, now: int = 10) -> MembershipRuntime:
    return MembershipRuntime(membership, journal, journal, lambda: now, journal.event)


def test_a_config_change_asks_to_be_persisted():
    m = Membership(CONFIG, Peer(id=MY_ID, address=ME), 0)
    epoch = m.set_config_epoch(1)
    slots = m.add_slots(range(10))
    assert (epoch.persist, slots.persist) == (True, True)
    assert epoch.messages == slots.messages == ()
    # Nothing persistent changed: nothing to save.
    assert not m.tick(100).persist


def test_claim_slots_is_saved_before_the_announcement_leaves():
    journal = Journal()
    rt = runtime(two_primaries(), journal)
    epoch = rt.claim_slots(range(50))
    assert epoch == 3
    assert journal.kinds() == ["save", "send"]
    saved = journal.entries[0][1]
    mine = next(node for node in saved["nodes"] if node["id"] == MY_ID.hex())
    # What left was decided on disk first: the new epoch and the slots.
    assert (saved["current_epoch"], mine["config_epoch"], mine["slots"]) == (3, 3, [[0, 49]])
    [ping] = journal.entries[1][1]
    assert ping.type == PING and ping.header.config_epoch == 3


def test_a_received_ping_returns_its_pong_and_only_asks_to_save_what_changed():
    a = two_primaries()
    # The other node of a's view, which knows a.
    other = Peer(id=OTHER_ID, address=OTHER, config_epoch=2)
    known = Remembered(current_epoch=2, peers=(Peer(id=MY_ID, address=ME, config_epoch=1),))
    b = Membership(CONFIG, other, 0, random=random.Random(2), remembered=known)
    ping = a.announce(5).messages[0].message
    step = b.receive(ping, 6)
    assert step.reply is not None and step.reply.type == PONG
    assert step.reply.header.sender == OTHER_ID
    assert not step.persist
    # A higher current epoch in a header is persisted.
    ping.header.current_epoch = 9
    assert b.receive(ping, 7).persist
    assert b.current_epoch == 9


def test_inputs_reach_every_header_of_the_step():
    m = two_primaries()
    inputs = Inputs(repl_offset=1234, primary_link_age_ms=0)
    announced = m.announce(5, inputs)
    assert [e.message.header.repl_offset for e in announced.messages] == [1234]
    journal = Journal()
    rt = runtime(m, journal)
    rt.attach_replication(lambda: 777, lambda: 0)
    rt.announce()
    [sent] = journal.entries[-1][1]
    assert sent.header.repl_offset == 777


def test_a_takeover_is_saved_then_announced_then_reported():
    """A replica's forced takeover: persist, then the PONGs to everyone, then RoleChanged."""
    primary = Peer(id=OTHER_ID, address=OTHER, config_epoch=2)
    third = Peer(id=THIRD_ID, address=Address("10.0.0.3", 7000, 17000), config_epoch=3)
    known = Remembered(
        current_epoch=3,
        peers=(primary, third),
        slots={OTHER_ID: range(100), THIRD_ID: range(100, 200)},
    )
    me = Peer(id=MY_ID, address=ME)
    m = Membership(CONFIG, me, 0, random=random.Random(3), remembered=known)
    m.replicate(OTHER_ID, 0)
    journal = Journal()
    rt = runtime(m, journal)
    rt.failover(FailoverMode.TAKEOVER)
    assert journal.kinds() == ["save", "send", "event"]
    saved = journal.entries[0][1]
    mine = next(node for node in saved["nodes"] if node["id"] == MY_ID.hex())
    assert (mine["role"], mine["config_epoch"], mine["slots"]) == ("primary", 4, [[0, 99]])
    assert {msg.type for msg in journal.entries[1][1]} == {PONG}
    assert journal.entries[2][1] == RoleChanged(b"")


def test_a_vote_is_persisted_by_the_step_that_casts_it():
    """Even when the request brings no new epoch, the vote itself must reach the disk."""
    failed = Peer(id=OTHER_ID, address=OTHER, config_epoch=2)
    candidate = Peer(
        id=THIRD_ID,
        address=Address("10.0.0.3", 7000, 17000),
        flags=REPLICA,
        primary_id=OTHER_ID,
    )
    known = Remembered(
        current_epoch=5,
        peers=(failed, candidate),
        slots={OTHER_ID: range(100), MY_ID: range(100, 200)},
    )
    m = Membership(CONFIG, Peer(id=MY_ID, address=ME, config_epoch=3), 0, remembered=known)

    def from_candidate(kind: int) -> bus_pb2.BusMessage:
        msg = bus_pb2.BusMessage(type=kind)
        header = msg.header
        header.sender, header.flags, header.primary = THIRD_ID, REPLICA, OTHER_ID
        header.current_epoch, header.config_epoch = 5, failed.config_epoch
        return msg

    fail = from_candidate(FAIL_MSG)
    fail.failing = OTHER_ID
    assert m.receive(fail, 10).events == (NodeFailed(OTHER_ID),)
    request = from_candidate(AUTH_REQUEST)
    request.header.slots.extend([0, 99])
    step = m.receive(request, 20)
    assert step.persist
    assert m.last_vote_epoch == 5
    assert [(e.dest, e.message.type) for e in step.messages] == [(candidate.address, AUTH_ACK)]
    # One vote per epoch.
    again = m.receive(request, 30)
    assert again.messages == () and not again.persist
    assert m.elections.last_refusal == "already voted in epoch 5"


def test_node_ids_are_twenty_random_bytes():
    ids = {new_node_id(random.Random(seed).randbytes) for seed in range(5)}
    assert len(ids) == 5
    assert all(len(node_id) == 20 for node_id in ids)
