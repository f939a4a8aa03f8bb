"""Outgoing bus messages: the header that describes this node, on every message.

Every header carries what Redis Cluster's does (sender, epochs, flags, the
slots it claims, its primary, its replication offset, its view of the
cluster state), so any message a peer receives refreshes its view of us.
PING, PONG and MEET also carry a gossip section about other nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from ..membership.model import Peer
from ..membership.step import Envelope, Turn
from ..membership.view import View
from ..wire import bus_pb2

PING = bus_pb2.MESSAGE_TYPE_PING
PONG = bus_pb2.MESSAGE_TYPE_PONG
MEET = bus_pb2.MESSAGE_TYPE_MEET
FAIL_MSG = bus_pb2.MESSAGE_TYPE_FAIL
UPDATE = bus_pb2.MESSAGE_TYPE_UPDATE
REPORT = bus_pb2.MESSAGE_TYPE_REPORT
AUTH_REQUEST = bus_pb2.MESSAGE_TYPE_FAILOVER_AUTH_REQUEST
AUTH_ACK = bus_pb2.MESSAGE_TYPE_FAILOVER_AUTH_ACK
MFSTART = bus_pb2.MESSAGE_TYPE_MFSTART
LEAVE = bus_pb2.MESSAGE_TYPE_LEAVE

MessageType: TypeAlias = bus_pb2.MessageType.ValueType

# The messages that carry gossip.
GOSSIPING = frozenset((PING, PONG, MEET))


class Messages:
    """Builds this node's messages from the view, the step's inputs and the gossip sampler."""

    def __init__(
        self,
        view: View,
        gossip: Callable[[bus_pb2.BusMessage, Peer | None], None],
        flags: Callable[[int], int],
    ) -> None:
        self._view = view
        # Adds a gossip section meant for a receiver (None: anyone).
        self._gossip = gossip
        # The message flags due at a given time (elections pause writes with them).
        self._flags = flags

    def build(self, kind: MessageType, turn: Turn, receiver: Peer | None) -> bus_pb2.BusMessage:
        """A message of ``kind``, with gossip chosen for ``receiver`` (None: anyone)."""
        view = self._view
        me = view.myself
        msg = bus_pb2.BusMessage(type=kind)
        header = msg.header
        header.sender = me.id
        header.current_epoch = view.current_epoch
        header.config_epoch = me.config_epoch
        header.flags = me.flags
        header.slots.extend(view.slots.flat_ranges(me.id))
        header.primary = me.primary_id
        header.repl_offset = turn.inputs.repl_offset
        header.mflags = self._flags(turn.now)
        header.cluster_ok = view.ok
        header.address.CopyFrom(me.address.to_proto())
        if kind in GOSSIPING:
            self._gossip(msg, receiver)
        return msg

    def to(self, peer: Peer, kind: MessageType, turn: Turn) -> Envelope:
        """A message of ``kind`` for ``peer``."""
        return Envelope(peer.address, self.build(kind, turn, peer), peer.id)


__all__ = [
    "AUTH_ACK",
    "AUTH_REQUEST",
    "FAIL_MSG",
    "GOSSIPING",
    "LEAVE",
    "MEET",
    "MFSTART",
    "PING",
    "PONG",
    "REPORT",
    "UPDATE",
    "MessageType",
    "Messages",
]
