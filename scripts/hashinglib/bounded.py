"""Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, SODA 2018).

A ring, but no server may hold more than ``ceil(c * m * w / W)`` of the
``m`` keys (its weighted share times ``c``): keys arrive in order, and one
whose server is full walks clockwise to the first server that is not. The
cap holds by construction, whatever the arcs; the price is that the
placement depends on the arrival order and on the cap, which moves with the
number of servers, so joins and leaves move more keys than 1/n.

Placement here replays the arrivals in the workload's order. A failure
re-places only the dead servers' keys, in the same order, under the cap
recomputed for the survivors (the cap follows the average, as in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from hashinglib.placement import (
    Failover,
    KeyFailover,
    Placement,
    Scheme,
    Servers,
    binary_search_steps,
)
from hashinglib.ring import RingTable
from hashinglib.workload import F64, I64, Workload


def caps(
    c: float, keys: int, servers: Servers, size: int, alive: Sequence[bool] | None = None
) -> I64:
    """Each server id's cap; 0 for a dead or unknown id."""
    live = [
        (s, w)
        for k, (s, w) in enumerate(zip(servers.ids, servers.weights, strict=True))
        if alive is None or alive[k]
    ]
    total = sum(w for _, w in live)
    out = np.zeros(size, dtype=np.int64)
    for s, w in live:
        out[s] = math.ceil(c * keys * w / total)
    return out


def walk(
    starts: Sequence[int], point_owner: Sequence[int], cap: Sequence[int], load: list[int]
) -> list[int]:
    """Place keys in order, one by one: the definition, kept as the reference for tests.

    Each key goes to the first server clockwise from its point that has
    room; ``load`` (per server id) is updated.
    """
    out = [0] * len(starts)
    for k, p in enumerate(starts):
        s = first_with_room(p, point_owner, cap, load)
        load[s] += 1
        out[k] = s
    return out


def first_with_room(
    point: int, point_owner: Sequence[int], cap: Sequence[int], load: Sequence[int]
) -> int:
    """The server of the first point at or after ``point`` whose server is below its cap."""
    s = point_owner[point]
    while load[s] >= cap[s]:
        point = (point + 1) % len(point_owner)
        s = point_owner[point]
    return s


def place_in_order(starts: I64, point_owner: I64, cap: I64, load: I64) -> tuple[I64, int]:
    """``walk``, vectorised: the same owners, and the points walked past in total.

    Between two moments a server fills up, every key goes to the first point
    at or after its own whose server still has room, which numpy computes for
    a whole run of keys at once. A run ends at the key that fills a server;
    the keys after it are computed again with that server closed. ``load`` is
    updated.
    """
    points = len(point_owner)
    owners = np.empty(len(starts), dtype=np.int64)
    open_points = np.flatnonzero(load[point_owner] < cap[point_owner])
    walked = 0
    done = 0
    run = 1024
    while done < len(starts):
        start = starts[done : done + run]
        pos = np.searchsorted(open_points, start)
        pos[pos == open_points.size] = 0
        target = open_points[pos]
        server = point_owner[target]
        # Rank of each key among this run's keys that go to the same server.
        order = np.argsort(server, kind="stable")
        grouped = server[order]
        first = np.ones(len(grouped), dtype=bool)
        first[1:] = grouped[1:] != grouped[:-1]
        index = np.arange(len(grouped))
        rank = index - np.maximum.accumulate(np.where(first, index, 0))
        fills = order[load[grouped] + rank + 1 == cap[grouped]]
        taken = int(fills.min()) + 1 if fills.size else len(start)
        owners[done : done + taken] = server[:taken]
        walked += int(((target[:taken] - start[:taken]) % points).sum())
        load += np.bincount(server[:taken], minlength=len(load))
        if fills.size:
            open_points = open_points[
                load[point_owner[open_points]] < cap[point_owner[open_points]]
            ]
            run = max(256, 2 * taken)
        else:
            run *= 2
        done += taken
    return owners, walked


class BoundedLoads(Scheme):
    def __init__(self, c: float = 1.25, vnodes: int = 1) -> None:
        self.c = c
        self.vnodes = vnodes
        self.name = f"bounded-{c:g}"
        self.label = f"bounded loads, c = {c:g} (ring, {vnodes} vnode{'s' if vnodes > 1 else ''})"

    def place(self, workload: Workload, servers: Servers) -> BoundedPlacement:
        return BoundedPlacement(self, workload, servers)


class BoundedPlacement(Placement):
    def __init__(self, scheme: BoundedLoads, workload: Workload, servers: Servers) -> None:
        self.c = scheme.c
        self.ring = RingTable.build(servers, scheme.vnodes)
        self.start = self.ring.successor(workload.hashes)
        size = max(servers.ids) + 1
        self.cap = caps(scheme.c, workload.size, servers, size)
        self.load = np.zeros(size, dtype=np.int64)
        owners, walked = place_in_order(self.start, self.ring.owner, self.cap, self.load)
        super().__init__(scheme, workload, servers, owners)
        self.walked = walked / max(workload.size, 1)

    @property
    def memory_bytes(self) -> int:
        # The ring, plus a load counter and a cap per server.
        return self.ring.memory_bytes(self.servers.count) + self.servers.count * 8

    @property
    def steps_per_lookup(self) -> float:
        return binary_search_steps(self.ring.size) + self.walked

    def lookup(self, key: bytes) -> int:
        """Where one more key would go now (the placement of stored keys depends on history)."""
        return first_with_room(
            self.ring.lookup_index(key), self.ring.owner_list, self._cap_list, self._load_list
        )

    @cached_property
    def _cap_list(self) -> list[int]:
        return list(self.cap.tolist())

    @cached_property
    def _load_list(self) -> list[int]:
        return list(self.load.tolist())

    def failover(self, load: F64, mode: str = "") -> Failover:
        return BoundedFailover(self, load)


class BoundedFailover(KeyFailover):
    """The dead servers' keys are placed again, in arrival order, under the survivors' cap."""

    def __init__(self, placement: BoundedPlacement, load: F64) -> None:
        super().__init__(placement.owners, load, max(placement.servers.ids) + 1)
        self.placement = placement

    def _choose(self, keys: I64) -> I64:
        p = self.placement
        alive = [bool(self.alive[s]) for s in p.servers.ids]
        cap = caps(p.c, p.workload.size, p.servers, len(self.alive), alive)
        counts = np.bincount(self.owners, minlength=len(self.alive))
        owners, _ = place_in_order(p.start[keys], p.ring.owner, cap, counts)
        return owners
