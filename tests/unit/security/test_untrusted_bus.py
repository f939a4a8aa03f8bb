"""A bus message from a node the cluster does not know changes nothing but earns a PONG."""

from __future__ import annotations

import random

import pytest

from slotcache_server.membership.machine import Membership, Remembered
from slotcache_server.membership.messages import FAIL_MSG, PING, PONG, REPORT, UPDATE
from slotcache_server.membership.model import Address, MembershipConfig, Peer
from slotcache_server.membership.snapshot import snapshot
from slotcache_server.wire import bus_pb2

CONFIG = MembershipConfig(node_timeout_ms=1_000)
MY_ID, OTHER_ID, STRANGER_ID = b"\x01" * 20, b"\x02" * 20, b"\x09" * 20
MAX_UINT64 = 2**64 - 1


def two_primaries() -> Membership:
    other = Peer(id=OTHER_ID, address=Address("10.0.0.2", 7000, 17000), config_epoch=2)
    known = Remembered(current_epoch=2, peers=(other,), slots={OTHER_ID: range(100)})
    me = Peer(id=MY_ID, address=Address("10.0.0.1", 7000, 17000), config_epoch=1)
    return Membership(CONFIG, me, 0, random=random.Random(1), remembered=known)


def from_stranger(kind: int) -> bus_pb2.BusMessage:
    """A message claiming the highest epochs and every slot, about the known primary."""
    message = bus_pb2.BusMessage(type=kind, failing=OTHER_ID)
    header = message.header
    header.sender = STRANGER_ID
    header.current_epoch = header.config_epoch = MAX_UINT64
    header.slots.extend([0, 16383])
    header.address.host, header.address.port, header.address.bus_port = "10.0.0.9", 1, 2
    message.gossip.add(node=OTHER_ID, flags=8, config_epoch=MAX_UINT64, slots=[0, 16383])
    message.update.node = STRANGER_ID
    message.update.config_epoch = MAX_UINT64
    message.update.slots.extend([0, 16383])
    return message


@pytest.mark.parametrize("kind", [PING, PONG, FAIL_MSG, REPORT, UPDATE])
def test_a_strangers_message_changes_nothing(kind):
    m = two_primaries()
    before = snapshot(m)
    step = m.receive(from_stranger(kind), 10)
    assert snapshot(m) == before
    assert m.current_epoch == 2
    assert not step.persist


def test_a_stranger_still_gets_its_pong_which_tells_it_nothing_new():
    m = two_primaries()
    step = m.receive(from_stranger(PING), 10)
    assert step.reply is not None and step.reply.type == PONG
    assert step.reply.header.current_epoch == 2
