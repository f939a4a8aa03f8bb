"""The data the membership state machine keeps about each node."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..wire import bus_pb2

PRIMARY = bus_pb2.NODE_FLAG_PRIMARY
REPLICA = bus_pb2.NODE_FLAG_REPLICA
PFAIL = bus_pb2.NODE_FLAG_PFAIL
FAIL = bus_pb2.NODE_FLAG_FAIL
FAILING = PFAIL | FAIL
PROXY = bus_pb2.NODE_FLAG_PROXY
# A node has exactly one of these roles; the header of each message states it.
ROLE = PRIMARY | REPLICA | PROXY

NODE_ID_BYTES = 20


def new_node_id(randbytes: Callable[[int], bytes]) -> bytes:
    """A fresh 160-bit node id, as Redis makes them.

    The caller chooses the randomness: the operating system's for a real
    node, a seeded generator for a simulated one, so that runs repeat.
    """
    return randbytes(NODE_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Address:
    """Where a node listens: its client port, its bus port and its RESP port (0: none)."""

    host: str
    port: int
    bus_port: int
    resp_port: int = 0

    @property
    def client(self) -> str:
        """``host:port`` of the client port."""
        return f"{self.host}:{self.port}"

    @property
    def bus(self) -> str:
        """``host:bus_port`` of the bus port."""
        return f"{self.host}:{self.bus_port}"

    def to_proto(self) -> bus_pb2.NodeAddress:
        """The wire form."""
        return bus_pb2.NodeAddress(
            host=self.host, port=self.port, bus_port=self.bus_port, resp_port=self.resp_port
        )

    @classmethod
    def from_proto(cls, msg: bus_pb2.NodeAddress) -> Address:
        """Read the wire form."""
        return cls(msg.host, msg.port, msg.bus_port, msg.resp_port)


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Timing and policy knobs, with Redis Cluster's defaults."""

    node_timeout_ms: int = 15_000
    tick_ms: int = 100
    # Probe the stalest of a few random nodes this often (or every node_timeout/4, if sooner).
    random_ping_ms: int = 1_000
    random_ping_candidates: int = 5
    # At least this many gossip entries per message, and about this fraction of the nodes.
    gossip_min: int = 3
    gossip_fraction: float = 0.1
    require_full_coverage: bool = True
    allow_reads_when_down: bool = False

    def __post_init__(self) -> None:
        if self.node_timeout_ms < 50:
            raise ValueError("node timeout must be at least 50 ms")

    @property
    def probe_interval_ms(self) -> int:
        """Time between random probes; short node timeouts probe faster."""
        return max(self.tick_ms, min(self.random_ping_ms, self.node_timeout_ms // 4))

    @property
    def resend_ms(self) -> int:
        """How often an unanswered ping is sent again (the original send time is kept)."""
        return max(self.tick_ms, self.node_timeout_ms // 5)

    @property
    def report_validity_ms(self) -> int:
        """How long a failure report counts: 2 x node_timeout, as in Redis."""
        return 2 * self.node_timeout_ms


@dataclass(slots=True)
class Peer:
    """What one node knows about another (or about itself)."""

    id: bytes
    address: Address
    flags: int = PRIMARY
    config_epoch: int = 0
    # The id of the node this one replicates. Empty for a primary, and for a
    # replica whose primary we have not heard of yet (gossip carries roles, not
    # primaries): the role itself is in ``flags``.
    primary_id: bytes = b""
    repl_offset: int = 0
    # When the outstanding ping was first sent; 0 when none is outstanding.
    ping_sent: int = 0
    # When that ping (or its last resend) went out.
    ping_attempt: int = 0
    # Last direct evidence of life: a PONG from the node.
    pong_received: int = 0
    fail_time: int = 0
    # When the state machine next looks at this node (its live schedule entry).
    due: int = 0
    # Primary id -> when it last reported this node as PFAIL or FAIL.
    fail_reports: dict[bytes, int] = field(default_factory=dict)

    @property
    def hex_id(self) -> str:
        """The id as operators see it."""
        return self.id.hex()

    @property
    def is_primary(self) -> bool:
        """Holds (or may hold) slots rather than replicating another node."""
        return bool(self.flags & PRIMARY)

    @property
    def is_replica(self) -> bool:
        """Replicates a primary (whose id may still be unknown)."""
        return bool(self.flags & REPLICA)

    @property
    def is_proxy(self) -> bool:
        """Forwards every call and never owns slots, replicates or votes (the proxy tier)."""
        return bool(self.flags & PROXY)

    @property
    def failing(self) -> bool:
        """Marked PFAIL or FAIL."""
        return bool(self.flags & FAILING)


def role_name(flags: int) -> str:
    """``primary``, ``replica`` or ``proxy``: the one role a node's flags give it."""
    if flags & PROXY:
        return "proxy"
    return "replica" if flags & REPLICA else "primary"


def flag_names(flags: int) -> list[str]:
    """Readable flag names, in Redis's vocabulary."""
    names = []
    for bit, name in (
        (PRIMARY, "primary"),
        (REPLICA, "replica"),
        (PROXY, "proxy"),
        (PFAIL, "pfail"),
        (FAIL, "fail"),
    ):
        if flags & bit:
            names.append(name)
    return names
