"""What one step of the membership state machine needs from the node and gives back.

Every input (a tick, a received message, an operator command) is one step,
and every step returns one :class:`Step`: the messages to send, the events
for the rest of the node, and whether the node file must be written. The
runtime applies it in a fixed order (persist, then send, then events), so
an epoch or a vote is on disk before any message that depends on it leaves,
whichever input caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..membership.model import Address
from ..wire import bus_pb2


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message for the transport to deliver to ``dest``'s bus port."""

    dest: Address
    message: bus_pb2.BusMessage
    # The id of the node at ``dest``: a message signed for it is refused by any other.
    node: bytes


@dataclass(frozen=True, slots=True)
class SlotsLost:
    """This node no longer owns ``slots``: a newer claim won them."""

    slots: tuple[int, ...]
    new_owner: bytes


@dataclass(frozen=True, slots=True)
class NodeFailed:
    """``node`` was marked FAIL (by us or by a FAIL message)."""

    node: bytes


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The cluster state flipped between ok and fail."""

    ok: bool


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This node became a replica of ``primary``, or a primary (``primary`` empty)."""

    primary: bytes


Event = SlotsLost | NodeFailed | StateChanged | RoleChanged


@dataclass(frozen=True, slots=True)
class Inputs:
    """What other parts of the node know and membership needs at each step.

    Replication owns both figures. Passing them in with each step, rather
    than letting the state machine call back into replication, keeps it a
    function of its inputs.
    """

    # Where this node's data stands: carried in every header, and what
    # ranks replicas in an election.
    repl_offset: int = 0
    # How long the replication link to our primary has been down; a replica
    # whose data is too old does not stand for election.
    primary_link_age_ms: int = 0


NO_INPUTS = Inputs()


@dataclass(frozen=True, slots=True)
class Step:
    """Everything one step produced, for the runtime to apply: persist, send, then events."""

    messages: tuple[Envelope, ...] = ()
    events: tuple[Event, ...] = ()
    # The node file must be written before the messages leave.
    persist: bool = False
    # The answer to a received PING or MEET, returned to its sender as the
    # response of the same exchange.
    reply: bus_pb2.BusMessage | None = None


# The step that changed nothing anyone needs to hear of.
NOTHING = Step()


class Outputs:
    """What a step has produced so far; the concern modules add to it as they go."""

    __slots__ = ("events", "messages", "persist", "recheck")

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.events: list[Event] = []
        self.persist = False
        # Something the cluster state depends on moved: recompute it.
        self.recheck = False

    def send(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for sending once the step is applied."""
        self.messages.append(envelope)

    def emit(self, event: Event) -> None:
        """Tell the rest of the node about ``event`` once the step is applied."""
        self.events.append(event)

    def changed(self) -> None:
        """The configuration changed in a way the cluster state depends on."""
        self.persist = self.recheck = True

    def step(self, reply: bus_pb2.BusMessage | None = None) -> Step:
        """The finished step."""
        if reply is None and not (self.messages or self.events or self.persist):
            return NOTHING  # most steps of a settled cluster: spare the allocation
        return Step(tuple(self.messages), tuple(self.events), self.persist, reply)


class Turn(Outputs):
    """The outputs of a step that also has a time and inputs (every step but two commands)."""

    __slots__ = ("inputs", "now")

    def __init__(self, now: int, inputs: Inputs = NO_INPUTS) -> None:
        super().__init__()
        self.now = now
        self.inputs = inputs


__all__ = [
    "NOTHING",
    "NO_INPUTS",
    "Envelope",
    "Event",
    "Inputs",
    "NodeFailed",
    "Outputs",
    "RoleChanged",
    "SlotsLost",
    "StateChanged",
    "Step",
    "Turn",
]
