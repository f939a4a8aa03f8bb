"""Consistent hashing on a ring (Karger et al. 1997), with virtual nodes.

Each server puts ``vnodes`` points per unit of weight on a 64-bit circle; a
key belongs to the first point at or after its hash, wrapping around. With
one point per server the arcs are as uneven as exponential gaps make them,
and a dead server's whole arc falls to its successor; more points shrink
both effects at the price of a bigger sorted table to search.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hashinglib.hashing import U64, key_hash, sequence, server_seed
from hashinglib.placement import (
    Failover,
    Placement,
    Scheme,
    Servers,
    UnitFailover,
    binary_search_steps,
    owner_bytes,
)
from hashinglib.workload import F64, I64, Workload


@dataclass(frozen=True)
class RingTable:
    """The sorted points of a ring and the server id each belongs to."""

    points: U64
    owner: I64

    @classmethod
    def build(cls, servers: Servers, vnodes: int) -> RingTable:
        """``vnodes`` points per unit of weight for each server (at least one)."""
        counts = [max(1, round(vnodes * w)) for w in servers.weights]
        points = np.concatenate(
            [sequence(server_seed(s), c) for s, c in zip(servers.ids, counts, strict=True)]
        )
        owner = np.repeat(np.asarray(servers.ids, dtype=np.int64), counts)
        order = np.argsort(points, kind="stable")
        return cls(points[order], owner[order])

    @property
    def size(self) -> int:
        """How many points."""
        return len(self.points)

    def successor(self, hashes: U64) -> I64:
        """Index of the point each hash belongs to: the first at or after it, wrapping."""
        index = np.searchsorted(self.points, hashes, side="left").astype(np.int64)
        index[index == self.size] = 0
        return index

    def memory_bytes(self, servers: int) -> int:
        """A 64-bit position and an owner number per point."""
        return self.size * (8 + owner_bytes(servers))

    @cached_property
    def point_list(self) -> list[int]:
        """The points as Python ints, for the scalar lookup's ``bisect``."""
        return list(self.points.tolist())

    @cached_property
    def owner_list(self) -> list[int]:
        """The owners as Python ints."""
        return list(self.owner.tolist())

    def lookup_index(self, key: bytes) -> int:
        """``successor`` of one key, from its bytes."""
        index = bisect.bisect_left(self.point_list, key_hash(key))
        return 0 if index == self.size else index


class Ring(Scheme):
    """A ring with ``vnodes`` points per server (per unit of weight)."""

    def __init__(self, vnodes: int) -> None:
        self.vnodes = vnodes
        self.name = f"ring-{vnodes}"
        self.label = f"ring, {vnodes} vnode{'s' if vnodes > 1 else ''}"

    def place(self, workload: Workload, servers: Servers) -> RingPlacement:
        ring = RingTable.build(servers, self.vnodes)
        point_of_key = ring.successor(workload.hashes)
        return RingPlacement(self, workload, servers, ring, point_of_key)


class RingPlacement(Placement):
    def __init__(
        self,
        scheme: Scheme,
        workload: Workload,
        servers: Servers,
        ring: RingTable,
        point_of_key: I64,
    ) -> None:
        super().__init__(scheme, workload, servers, ring.owner[point_of_key])
        self.ring = ring
        self.point_of_key = point_of_key

    @property
    def memory_bytes(self) -> int:
        return self.ring.memory_bytes(self.servers.count)

    @property
    def steps_per_lookup(self) -> float:
        return binary_search_steps(self.ring.size)

    def lookup(self, key: bytes) -> int:
        return self.ring.owner_list[self.ring.lookup_index(key)]

    def failover(self, load: F64, mode: str = "") -> Failover:
        return RingFailover(self.ring, self.point_of_key, load, max(self.servers.ids) + 1)


class RingFailover(UnitFailover):
    """A dead server's points pass their arcs to the next live point clockwise."""

    def __init__(self, ring: RingTable, point_of_key: I64, load: F64, size: int) -> None:
        super().__init__(point_of_key, load, ring.size, size)
        self.point_owner = ring.owner
        self.unit_owner = ring.owner.copy()

    def _reroute(self, dead: I64) -> None:
        live = np.flatnonzero(self.alive[self.point_owner])
        if live.size == 0:
            return
        nxt = np.searchsorted(live, np.arange(len(self.point_owner)), side="left")
        nxt[nxt == live.size] = 0
        self.unit_owner = self.point_owner[live[nxt]]
