"""The client's map of slot owners: built from a Topology reply, patched by MOVED.

Pure data, no I/O: the core asks it where a slot lives and tells it what a
redirect or a refresh taught. One list of 16384 address strings keeps the
lookup on the request path a single C-level index operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from slotcache.contract import SLOT_COUNT
from slotcache.v1 import cache_pb2 as pb


@dataclass(frozen=True, slots=True)
class Node:
    """One node as Topology described it."""

    id: str
    address: str
    primary: bool
    failing: bool
    primary_id: str = ""


class SlotMap:
    """Slot → address of the primary that serves it, and the epoch the map reflects."""

    __slots__ = ("_owners", "cluster_ok", "epoch", "nodes", "replicas", "sole_owner")

    def __init__(
        self,
        owners: list[str | None],
        epoch: int = 0,
        cluster_ok: bool = True,
        nodes: Iterable[Node] = (),
    ) -> None:
        if len(owners) != SLOT_COUNT:
            raise ValueError(f"a slot map needs {SLOT_COUNT} entries, not {len(owners)}")
        self._owners = owners
        first = owners[0]
        #: The address serving every slot (a standalone server, a cluster of one), else None:
        #: then no key needs hashing to be routed.
        self.sole_owner = first if first is not None and owners.count(first) == SLOT_COUNT else None
        self.epoch = epoch
        self.cluster_ok = cluster_ok
        self.nodes = tuple(nodes)
        # Primary address -> addresses of its healthy replicas (for replica reads).
        by_id = {n.id: n.address for n in self.nodes if n.primary}
        replicas: dict[str, list[str]] = {}
        for node in self.nodes:
            primary = by_id.get(node.primary_id)
            if not node.primary and not node.failing and primary is not None:
                replicas.setdefault(primary, []).append(node.address)
        self.replicas: dict[str, tuple[str, ...]] = {p: tuple(r) for p, r in replicas.items()}

    @classmethod
    def single(cls, address: str) -> SlotMap:
        """Every slot at one address (a standalone server)."""
        return cls([address] * SLOT_COUNT)

    @classmethod
    def from_topology(cls, reply: pb.TopologyReply, dialed: str) -> SlotMap:
        """Build the map a Topology reply describes; ``dialed`` is where the reply came from.

        When two nodes claim a slot (a view caught mid-change), the higher
        config epoch wins, as it does inside the cluster. A reply that lists
        only the responder (a standalone server, or a cluster of one) is
        mapped to the address the client dialed: such a server may advertise
        a host the client cannot use (``0.0.0.0``, a pod name), and the
        dialed address is known to work.
        """
        nodes = [n for n in reply.nodes if n.address]
        single = len(reply.nodes) == 1 and reply.nodes[0].id == reply.responder_id
        owners: list[str | None] = [None] * SLOT_COUNT
        for info in sorted(nodes, key=lambda n: n.config_epoch):
            address = dialed if single else info.address
            for r in info.slots:
                if r.start <= r.end < SLOT_COUNT:
                    owners[r.start : r.end + 1] = [address] * (r.end - r.start + 1)
        described = [
            Node(
                n.id,
                dialed if single else n.address,
                # A proxy owns no slots and is nobody's primary: never a routing target.
                n.role not in (pb.ROLE_REPLICA, pb.ROLE_PROXY),
                n.failing,
                n.primary_id,
            )
            for n in nodes
        ]
        return cls(owners, reply.epoch, reply.cluster_ok, described)

    def owner(self, slot: int) -> str | None:
        """The address serving ``slot``, or None when no node owns it."""
        return self._owners[slot]

    def owners_of(self, slots: list[int]) -> list[str | None]:
        """The address serving each of ``slots``."""
        owners = self._owners
        return [owners[s] for s in slots]

    def replicas_of(self, address: str) -> tuple[str, ...]:
        """Healthy replicas of the primary at ``address`` (empty when it has none)."""
        return self.replicas.get(address, ())

    def apply_moved(self, slot: int, address: str, epoch: int) -> None:
        """Record what a MOVED said: ``slot`` now lives at ``address``.

        The epoch only ever grows, so a later refresh from a node that has
        not yet heard of the change (a lower epoch) cannot undo it.
        """
        self._owners[slot] = address
        if address != self.sole_owner:
            self.sole_owner = None
        self.epoch = max(self.epoch, epoch)

    def addresses(self) -> list[str]:
        """Every address the map knows, slot owners first, each once."""
        seen: dict[str, None] = {}
        for owner in self._owners:
            if owner is not None:
                seen.setdefault(owner, None)
        for node in self.nodes:
            seen.setdefault(node.address, None)
        return list(seen)

    def assigned(self) -> int:
        """How many slots have an owner."""
        return SLOT_COUNT - self._owners.count(None)
