"""Slot ownership: the higher config epoch wins, collisions resolve, UPDATE fixes stale claims.

A claim spreads three ways: in the claimant's own header, in gossip entries
about the claimant (config epoch + slots, from the sender's table), and, to
a node that still claims slots someone else owns under a newer epoch, in an
UPDATE message. In every path, a claim only wins a slot if its config epoch
is higher than the current owner's; these tests check that a newer claim
wins everywhere, that no stale claim (in a header or in gossip) ever takes a
slot back, and that a stale node learns it lost its slots.
"""

from __future__ import annotations

import pytest

from slotcache.contract import split_slots, to_ranges
from slotcache_server.membership.machine import Membership
from slotcache_server.membership.messages import PING, UPDATE
from slotcache_server.membership.model import FAIL, PRIMARY, MembershipConfig
from slotcache_server.membership.slot_table import flatten
from slotcache_server.membership.step import NodeFailed, RoleChanged, SlotsLost
from slotcache_server.simnet import SimNetwork, SimNode
from slotcache_server.wire import bus_pb2
from tests.sim.simhelpers import all_see, formed

NT = 1_000
CONFIG = MembershipConfig(node_timeout_ms=NT)


def slots_lost(net: SimNetwork) -> list[tuple[int, SlotsLost]]:
    return [(e.node, e.event) for e in net.events if isinstance(e.event, SlotsLost)]


def ping(src: Membership, dst: Membership, now: int) -> bus_pb2.BusMessage:
    """What ``src`` would send ``dst`` right now, for hand-driven exchanges."""
    return next(e.message for e in src.announce(now).messages if e.dest == dst.myself.address)


class OwnershipWatch:
    """Checks, each time it is called, that no view ever hands ``slots`` back.

    Once a node's view shows ``new`` owning one of the slots, any later view
    showing another owner is a stale claim overriding a newer one.
    """

    def __init__(self, net: SimNetwork, slots: list[int], new: bytes) -> None:
        self.net = net
        # The first, a middle and the last slot: claims move ranges as a whole.
        self.sample = sorted({slots[0], slots[len(slots) // 2], slots[-1]})
        self.new = new
        self.flipped: set[tuple[int, int]] = set()

    def __call__(self) -> bool:
        for node in self.net.alive():
            for slot in self.sample:
                owner = node.membership.slots.owner(slot)
                if owner == self.new:
                    self.flipped.add((node.index, slot))
                else:
                    assert (node.index, slot) not in self.flipped, (
                        f"node {node.index} handed slot {slot} back at {self.net.now} ms"
                    )
        return len(self.flipped) == len(self.net.alive()) * len(self.sample)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_higher_config_epoch_claim_wins_everywhere(seed):
    n = 20
    net = formed(n, CONFIG, seed)
    claimant, loser = net.nodes[3], net.nodes[7]
    start, end = split_slots(n)[7]
    taken = list(range(start, end + 1))
    # The claim alone, without the runtime's announcement: gossip must spread it.
    claimant.runtime.apply(claimant.membership.claim_slots(taken, net.now))
    assert claimant.membership.myself.config_epoch == n + 1
    watch = OwnershipWatch(net, taken, claimant.id)
    at = net.wait_for(lambda: watch() and net.converged(), 20 * CONFIG.probe_interval_ms, 10)
    assert at is not None, "the claim did not reach every node within 20 probe intervals"
    for node in net.nodes:
        m = node.membership
        assert all(m.slots.owner(slot) == claimant.id for slot in taken)
        assert m.slots.count(loser.id) == 0
        assert m.nodes[claimant.id].config_epoch == n + 1
        assert m.current_epoch == n + 1
        assert m.ok
    # Exactly one node lost slots, the old owner, and it knows who took them.
    assert slots_lost(net) == [(loser.index, SlotsLost(tuple(taken), claimant.id))]


@pytest.mark.parametrize("n", [5, 20])
def test_equal_config_epochs_are_made_distinct(n):
    """Every primary at config epoch 1, as if created without SET-CONFIG-EPOCH."""
    net = SimNetwork(CONFIG, seed=6)
    for start, end in split_slots(n):
        node = net.add_node()
        node.runtime.set_config_epoch(1)
        node.runtime.add_slots(range(start, end + 1))
    for i in range(1, n):
        net.meet(0, i)

    def distinct() -> bool:
        return len({node.membership.myself.config_epoch for node in net.nodes}) == n

    # A collision is resolved when the two colliding primaries next exchange a
    # message (the one with the smaller id takes current_epoch + 1, which may
    # collide again), so this takes a few dozen probe intervals for 20 nodes.
    at = net.wait_for(lambda: distinct() and net.converged(), 60_000, step_ms=50)
    assert at is not None, [node.membership.myself.config_epoch for node in net.nodes]
    # Resolution hands out the smallest epochs it can: 1..n.
    assert sorted(node.membership.myself.config_epoch for node in net.nodes) == list(
        range(1, n + 1)
    )
    assert not slots_lost(net), "resolving a collision must not move slots"


def test_in_a_collision_the_smaller_id_takes_a_new_epoch():
    net = SimNetwork(CONFIG, seed=7)
    for start, end in split_slots(2):
        node = net.add_node()
        node.runtime.set_config_epoch(1)
        node.runtime.add_slots(range(start, end + 1))
    net.meet(0, 1)
    assert net.wait_for(net.converged, 10_000, step_ms=50) is not None
    small, large = sorted(net.nodes, key=lambda node: node.id)
    assert large.membership.myself.config_epoch == 1
    assert small.membership.myself.config_epoch == 2


def test_update_tells_a_stale_node_that_it_lost_its_slots():
    """Hand-driven: C knows B's newer claim; A's stale header gets an UPDATE back."""
    net = formed(3, CONFIG, seed=8)
    a, b, c = (node.membership for node in net.nodes)
    now = net.now
    a_slots = a.slots.slots_of(a.id)
    b.claim_slots(a_slots, now)
    c.receive(ping(b, c, now), now)
    assert c.slots.owner(a_slots[0]) == b.id

    stale_ping = ping(a, c, now)
    out = c.receive(stale_ping, now).messages
    assert c.slots.owner(a_slots[0]) == b.id, "a stale header took a slot back"
    updates = [e for e in out if e.message.type == UPDATE]
    assert len(updates) == 1
    assert updates[0].dest == a.myself.address
    update = updates[0].message.update
    assert update.node == b.id
    assert update.config_epoch == b.myself.config_epoch
    # As in Redis, the UPDATE carries the owner's whole slot set.
    assert list(update.slots) == c.slots.flat_ranges(b.id)
    assert set(a_slots) <= set(c.slots.slots_of(b.id))

    step = a.receive(updates[0].message, now + 1)
    # Having lost its last slot, A follows the node that took them, as in Redis 7.
    assert step.events == (SlotsLost(tuple(a_slots), b.id), RoleChanged(b.id))
    assert step.persist
    assert a.slots.count(a.id) == 0
    assert a.myself.primary_id == b.id
    assert all(a.slots.owner(slot) == b.id for slot in a_slots)
    assert a.nodes[b.id].config_epoch == b.myself.config_epoch


def test_a_node_partitioned_during_a_claim_learns_it_lost_its_slots():
    n = 7
    net = formed(n, CONFIG, seed=9)
    stale, claimant = net.nodes[2], net.nodes[5]
    taken = stale.membership.slots.slots_of(stale.id)
    net.partition([stale.index])
    claimant.runtime.apply(claimant.membership.claim_slots(taken, net.now))
    others = [node for node in net.nodes if node is not stale]
    watch = OwnershipWatch(net, taken, claimant.id)
    # The rest of the cluster adopts the claim (and marks the isolated node FAIL).

    def adopted() -> bool:
        watch()
        return all(
            node.membership.slots.owner(taken[0]) == claimant.id for node in others
        ) and all_see(others, [stale], FAIL)

    assert net.wait_for(adopted, 4 * NT, 10) is not None
    assert stale.membership.slots.count(stale.id) == len(taken)
    assert not slots_lost(net)
    # The stale node owns nothing in the others' views, so its FAIL goes with its first PONG.
    updates_before = net.traffic[UPDATE].messages if UPDATE in net.traffic else 0
    net.heal()
    bound = CONFIG.resend_ms + 2 * CONFIG.tick_ms + 10 * CONFIG.probe_interval_ms

    def settled() -> bool:
        watch()
        return net.converged()

    at = net.wait_for(settled, bound, step_ms=10)
    assert at is not None, "the stale node did not rejoin with the new slot map"
    assert net.traffic[UPDATE].messages > updates_before, "nobody sent the stale node an UPDATE"
    assert slots_lost(net) == [(stale.index, SlotsLost(tuple(taken), claimant.id))]
    assert stale.membership.slots.count(stale.id) == 0
    assert not [e for e in net.events if isinstance(e.event, NodeFailed) and e.node == stale.index]


def gossip_ping(sender: SimNode, about: SimNode, epoch: int, slots: list[int], now: int):
    """A PING from ``sender`` with one gossip entry: ``about`` owns ``slots`` at ``epoch``."""
    message = sender.membership.meet_message(now)
    message.type = PING
    del message.gossip[:]
    message.gossip.add(
        node=about.id,
        address=about.address.to_proto(),
        flags=PRIMARY,
        config_epoch=epoch,
        slots=flatten(to_ranges(slots)),
    )
    return message


def test_a_gossiped_claim_never_overrides_a_newer_claim():
    net = formed(4, CONFIG, seed=10)
    old, new, receiver, gossiper = net.nodes
    now = net.now
    taken = old.membership.slots.slots_of(old.id)
    old_epoch = old.membership.myself.config_epoch
    new.membership.claim_slots(taken, now)
    new_epoch = new.membership.myself.config_epoch
    r = receiver.membership
    r.receive(ping(new.membership, r, now), now)
    assert r.slots.owner(taken[0]) == new.id

    # A third node still gossips the old claim: it must change nothing.
    r.receive(gossip_ping(gossiper, old, old_epoch, taken, now), now)
    assert all(r.slots.owner(slot) == new.id for slot in taken)
    assert r.nodes[old.id].config_epoch == old_epoch
    # An equal epoch does not win either (ties keep the current owner).
    r.receive(gossip_ping(gossiper, old, new_epoch, taken, now), now)
    assert all(r.slots.owner(slot) == new.id for slot in taken)
    # A strictly newer claim in gossip does win (so the check above can fail).
    r.receive(gossip_ping(gossiper, old, new_epoch + 1, taken[:10], now), now)
    assert [r.slots.owner(slot) for slot in taken[:11]] == [old.id] * 10 + [new.id]
    assert r.nodes[old.id].config_epoch == new_epoch + 1


def test_a_newer_epoch_does_not_carry_slots_its_owner_gave_up():
    """The sequence of a reshard: Z takes K from Y, then Y takes other slots (a new epoch).

    S has not heard Z's claim yet when it hears Y's new header. S must not go
    on attributing K to Y under Y's new epoch: gossiped to R (which knows Z
    owns K) that pairing would beat Z's newer claim, and R's UPDATE would then
    make Z drop K, leaving K served by nobody.
    """
    net = formed(5, CONFIG, seed=12)
    y, z, s, r, w = (node.membership for node in net.nodes)
    now = net.now

    def deliver(src, dst):
        return dst.receive(ping(src, dst, now), now).messages

    k = y.slots.slots_of(y.id)[:-1]  # Y keeps one slot, so it stays a primary
    z.claim_slots(k, now)
    deliver(z, y)
    deliver(z, r)
    assert y.slots.count(y.id) == 1
    assert r.slots.owner(k[0]) == z.id
    y.claim_slots(w.slots.slots_of(w.id)[:5], now)
    assert y.myself.config_epoch > z.myself.config_epoch
    deliver(y, s)  # s hears Y's new epoch, but not yet Z's claim
    assert s.nodes[y.id].config_epoch == y.myself.config_epoch
    assert s.slots.owner(k[0]) != y.id, "K still paired with Y's new epoch"

    # What s now gossips about Y cannot move K at r...
    s_says = gossip_ping(
        net.nodes[2], net.nodes[0], s.nodes[y.id].config_epoch, s.slots.slots_of(y.id), now
    )
    r.receive(s_says, now)
    assert r.slots.owner(k[0]) == z.id
    # ...so Z's header draws no UPDATE from r, and Z keeps K.
    out = deliver(z, r)
    assert not [event for envelope in out for event in z.receive(envelope.message, now).events]
    assert z.slots.owner(k[0]) == z.id
    # Once s hears Z's claim, it has the right owner again.
    deliver(z, s)
    assert s.slots.owner(k[0]) == z.id


def test_an_older_header_overtaken_by_a_newer_one_claims_nothing():
    """Messages from one sender can be reordered (concurrent unary calls)."""
    net = formed(3, CONFIG, seed=13)
    y, z, s = (node.membership for node in net.nodes)
    now = net.now
    old_header = ping(y, s, now)
    k = y.slots.slots_of(y.id)[:-1]  # Y keeps one slot, so it stays a primary
    z.claim_slots(k, now)
    y.receive(ping(z, y, now), now)
    y.claim_slots(s.slots.slots_of(s.id)[:5], now)  # Y moves on to a newer epoch
    s.receive(ping(z, s, now), now)
    s.receive(ping(y, s, now), now)
    assert s.slots.owner(k[0]) == z.id
    s.receive(old_header, now)  # arrives last
    assert s.slots.owner(k[0]) == z.id
