"""One node's picture of the cluster, shared by the modules that keep it current.

Each concern updates its own part: the failure detector the liveness flags
and ping clocks, claims the slots, epochs and roles, the cluster state
``ok`` and ``size``. Elections only read it, through :class:`ReadView`.
"""

from __future__ import annotations

import random as _random
from collections.abc import Iterable, Mapping
from typing import Protocol

from ..membership.model import MembershipConfig, Peer
from ..membership.slot_table import SlotTable


class SlotView(Protocol):
    """Slot ownership, read only."""

    def owner(self, slot: int) -> bytes | None:
        """The node that owns ``slot``, or None."""

    def count(self, node: bytes) -> int:
        """How many slots ``node`` owns."""

    def slots_of(self, node: bytes) -> list[int]:
        """The slots ``node`` owns, ascending."""

    def flat_ranges(self, node: bytes) -> list[int]:
        """The slots of ``node`` as flat ``start, end`` pairs."""


class ReadView(Protocol):
    """The view as a module that must not change it sees it."""

    @property
    def config(self) -> MembershipConfig:
        """Timing and policy."""

    @property
    def rng(self) -> _random.Random:
        """The node's random generator (seeded in simulations)."""

    @property
    def myself(self) -> Peer:
        """This node."""

    @property
    def id(self) -> bytes:
        """This node's id."""

    @property
    def nodes(self) -> Mapping[bytes, Peer]:
        """Every known node, this one included."""

    @property
    def slots(self) -> SlotView:
        """Who owns each slot."""

    @property
    def current_epoch(self) -> int:
        """The highest epoch this node has seen."""

    @property
    def size(self) -> int:
        """How many known primaries own slots: the electorate."""

    def peers(self) -> Iterable[Peer]:
        """Every known node except this one."""

    def my_primary(self) -> Peer | None:
        """The primary this node replicates, if it is a replica."""

    def is_voter(self, node: Peer) -> bool:
        """Counts towards failure and election majorities."""


class View:
    """Who is known, who owns what, and the epochs; the concern modules share one."""

    def __init__(self, config: MembershipConfig, myself: Peer, rng: _random.Random) -> None:
        self.config = config
        self.myself = myself
        self.rng = rng
        self.nodes: dict[bytes, Peer] = {myself.id: myself}
        self.slots = SlotTable()
        self.current_epoch = 0
        # Both set by the cluster state each time it is recomputed.
        self.ok = False
        self.size = 0
        # Peer ids in a list, for random sampling; rebuilt after a node comes or goes.
        self._ids: list[bytes] = []
        self._ids_stale = True
        # Forgotten nodes, ignored in gossip until the given time (Redis's ban list).
        self._banned: dict[bytes, int] = {}

    @property
    def id(self) -> bytes:
        """This node's id."""
        return self.myself.id

    def peers(self) -> Iterable[Peer]:
        """Every known node except this one."""
        return (p for p in self.nodes.values() if p is not self.myself)

    def peer_ids(self) -> list[bytes]:
        """The ids of every other known node (do not modify the list)."""
        if self._ids_stale:
            self._ids = [p.id for p in self.peers()]
            self._ids_stale = False
        return self._ids

    def my_primary(self) -> Peer | None:
        """The primary this node replicates, if it is a replica."""
        primary = self.myself.primary_id
        return self.nodes.get(primary) if primary else None

    def is_voter(self, node: Peer) -> bool:
        """Only slot-owning primaries count towards failure and election majorities.

        A proxy is excluded by name as well as by its empty slot set: should a
        claim ever pair slots with a proxy's id, it must still not vote.
        """
        return node.is_primary and not node.is_proxy and self.slots.count(node.id) > 0

    def owner_of(self, slot: int) -> Peer | None:
        """The node that serves ``slot``, if known."""
        owner = self.slots.owner(slot)
        return self.nodes.get(owner) if owner is not None else None

    def slot_ranges(self, node_id: bytes) -> list[tuple[int, int]]:
        """The slots of a node as inclusive ranges."""
        flat = self.slots.flat_ranges(node_id)
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    def add(self, peer: Peer) -> Peer:
        """Know ``peer`` from now on."""
        self.nodes[peer.id] = peer
        self._ids_stale = True
        return peer

    def forget(self, node_id: bytes, ban_until: int) -> None:
        """Drop a node and ignore gossip about it until ``ban_until``."""
        del self.nodes[node_id]
        self._banned[node_id] = ban_until
        self._ids_stale = True

    def banned(self, node_id: bytes, now: int) -> bool:
        """Gossip about ``node_id`` is ignored: an operator made us forget it."""
        return self._banned.get(node_id, 0) > now


__all__ = ["ReadView", "SlotView", "View"]
