"""Drives one node's membership state machine and applies each step it returns.

The state machine decides; this feeds it the time and the inputs that other
parts of the node know (replication's offset and link age), and applies
every :class:`Step` in one place, in one order: persist, then send, then
events. Epochs and votes are therefore on disk before any message that
relies on them leaves, whether the step came from a tick, a message, a
reply or an operator command.

The transport and the node-file store are passed in: gRPC and the data
directory in a real node (:mod:`cluster_runtime`), an in-memory network and
store in simulation (:mod:`simnet`). Both run this same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from .membership.failover import FailoverMode
from .membership.machine import Membership
from .membership.model import Peer
from .membership.step import NO_INPUTS, Envelope, Event, Inputs, Step
from .wire import bus_pb2


class Transport(Protocol):
    """Moves envelopes between nodes' bus ports; replies come back to :meth:`on_reply`.

    ``BusTransport`` does it over gRPC; simulations use an in-memory
    implementation with a fake clock, latency, loss and partitions.
    """

    def send_all(self, envelopes: Sequence[Envelope]) -> None:
        """Start delivering each envelope."""


class NodeStore(Protocol):
    """Where the persistent part of the view goes (the node file, in a real node)."""

    def save(self, membership: Membership) -> None:
        """Persist ``membership``'s configuration durably before returning."""


class MembershipRuntime:
    """One node's membership with its clock, transport, store and event handler."""

    def __init__(
        self,
        membership: Membership,
        transport: Transport,
        store: NodeStore,
        clock: Callable[[], int],
        on_event: Callable[[Event], None],
    ) -> None:
        self.membership = membership
        self.transport = transport
        self.store = store
        self.clock = clock
        self._on_event = on_event
        # Replication's offset and link age, once attached.
        self._replication: tuple[Callable[[], int], Callable[[], int]] | None = None

    def attach_replication(self, offset: Callable[[], int], link_age_ms: Callable[[], int]) -> None:
        """Where to read this node's replication offset and link age at each step."""
        self._replication = (offset, link_age_ms)

    def inputs(self) -> Inputs:
        """The inputs of a step taken now."""
        if self._replication is None:
            return NO_INPUTS
        offset, link_age_ms = self._replication
        return Inputs(repl_offset=offset(), primary_link_age_ms=link_age_ms())

    # ---- the one place a step is applied ------------------------------------------

    def apply(self, step: Step) -> None:
        """Persist, then send, then hand out the events."""
        if step.persist:
            self.store.save(self.membership)
        if step.messages:
            self.transport.send_all(step.messages)
        for event in step.events:
            self._on_event(event)

    def save(self) -> None:
        """Persist the configuration now, changed or not (a node does on start)."""
        self.store.save(self.membership)

    # ---- the clock and the bus ---------------------------------------------------------

    def tick(self) -> None:
        """Advance the state machine; a node calls this every tick_ms."""
        self.apply(self.membership.tick(self.clock(), self.inputs()))

    def handle(self, message: bus_pb2.BusMessage) -> bus_pb2.BusMessage | None:
        """Process a message from a peer; return the reply the exchange answers with."""
        step = self.membership.receive(message, self.clock(), self.inputs())
        self.apply(step)
        return step.reply

    def on_reply(self, message: bus_pb2.BusMessage) -> None:
        """Process the reply to a message this node sent (a reply gets no reply)."""
        self.handle(message)

    def announce(self) -> None:
        """Ping every known node at once, as a node does when it starts."""
        self.apply(self.membership.announce(self.clock(), self.inputs()))

    # ---- operator commands ------------------------------------------------------------

    def meet_message(self) -> bus_pb2.BusMessage:
        """The MEET to exchange with a node an operator introduces."""
        return self.membership.meet_message(self.clock(), self.inputs())

    def complete_meet(self, reply: bus_pb2.BusMessage) -> Peer:
        """Add the node that answered our MEET; return it."""
        self.apply(self.membership.complete_meet(reply, self.clock(), self.inputs()))
        return self.membership.nodes[bytes(reply.header.sender)]

    def add_slots(self, slots: Iterable[int]) -> None:
        """Claim unassigned slots (raises ClusterError and changes nothing on conflict)."""
        self.apply(self.membership.add_slots(slots))

    def claim_slots(self, slots: Iterable[int]) -> int:
        """Take slots under a new config epoch and tell every node at once; return the epoch."""
        self.apply(self.membership.claim_slots(slots, self.clock()))
        self.announce()
        return self.membership.myself.config_epoch

    def apply_claim(self, node_id: bytes, epoch: int, slots: Iterable[int]) -> None:
        """Adopt another node's claim now (the source of a finished migration does)."""
        self.apply(self.membership.apply_claim(node_id, epoch, slots, self.clock()))

    def set_config_epoch(self, epoch: int) -> None:
        """Set a fresh node's config epoch."""
        self.apply(self.membership.set_config_epoch(epoch))

    def replicate(self, primary_id: bytes) -> None:
        """Become a replica of a known primary."""
        self.apply(self.membership.replicate(primary_id, self.clock()))

    def forget(self, node_id: bytes) -> None:
        """Remove a node from this node's view."""
        self.apply(self.membership.forget(node_id, self.clock()))

    def failover(self, mode: FailoverMode) -> None:
        """Start a manual failover on this replica."""
        self.apply(self.membership.manual_failover(mode, self.clock(), self.inputs()))


__all__ = ["MembershipRuntime", "NodeStore", "Transport"]
