"""Rendezvous or highest-random-weight hashing (Thaler and Ravishankar, 1998).

Every key scores every server and goes to the best score. Shares are even,
a new server takes only the keys it now wins (1/(n+1)), and a dead server's
keys each go to their own second choice, so they spread evenly over the
survivors. The price is n hashes per lookup. Weights use the logarithmic
method (Schindelhauer and Schomaker, 2005): score = -w / ln(u), which gives
each server exactly its weight's share in expectation.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from hashinglib.hashing import U64, key_hash, mix64, mix64_array, server_seed, unit_interval
from hashinglib.placement import Failover, KeyFailover, Placement, Scheme, Servers
from hashinglib.workload import F64, I64, Workload

# Scores computed at once, as keys x servers; bounds the memory of one step.
_CELLS_PER_CHUNK = 2_000_000


def scores(hashes: U64, seeds: U64, weights: F64 | None) -> U64 | F64:
    """Score of each key (rows) for each server (columns); higher wins."""
    raw = mix64_array(hashes[:, None] ^ seeds[None, :])
    if weights is None:
        return raw
    weighted: F64 = -weights[None, :] / np.log(unit_interval(raw))
    return weighted


def best(hashes: U64, seeds: U64, weights: F64 | None) -> tuple[I64, npt.NDArray[Any]]:
    """Index of the winning server for each key, and the winning score."""
    chunk = max(1, _CELLS_PER_CHUNK // max(len(seeds), 1))
    index = np.empty(len(hashes), dtype=np.int64)
    top: npt.NDArray[Any] = np.empty(
        len(hashes), dtype=np.uint64 if weights is None else np.float64
    )
    for start in range(0, len(hashes), chunk):
        part = scores(hashes[start : start + chunk], seeds, weights)
        win = np.argmax(part, axis=1)
        index[start : start + chunk] = win
        top[start : start + chunk] = part[np.arange(len(win)), win]
    return index, top


class Rendezvous(Scheme):
    name = "rendezvous"
    label = "rendezvous (HRW)"

    def place(self, workload: Workload, servers: Servers) -> RendezvousPlacement:
        return RendezvousPlacement(self, workload, servers)


class RendezvousPlacement(Placement):
    def __init__(self, scheme: Scheme, workload: Workload, servers: Servers) -> None:
        self.ids = np.asarray(servers.ids, dtype=np.int64)
        self.seeds = np.asarray([server_seed(s) for s in servers.ids], dtype=np.uint64)
        self.weights = None if servers.equal else np.asarray(servers.weights)
        index, self.top = best(workload.hashes, self.seeds, self.weights)
        super().__init__(scheme, workload, servers, self.ids[index])

    @property
    def memory_bytes(self) -> int:
        # One 64-bit seed per server (and its weight when weighted).
        return len(self.seeds) * (8 if self.weights is None else 16)

    @property
    def steps_per_lookup(self) -> float:
        return float(len(self.seeds))

    @cached_property
    def _seed_list(self) -> list[int]:
        return list(self.seeds.tolist())

    def lookup(self, key: bytes) -> int:
        h = key_hash(key)
        if self.weights is None:
            values = [mix64(h ^ s) for s in self._seed_list]
            return int(self.ids[values.index(max(values))])
        weighted = [
            -float(w) / math.log(((mix64(h ^ s) >> 11) + 0.5) / float(1 << 53))
            for s, w in zip(self._seed_list, self.weights, strict=True)
        ]
        return int(self.ids[weighted.index(max(weighted))])

    def add(self, server: int) -> I64:
        """Only the keys the newcomer now wins move; the others keep their winner."""
        if self.weights is not None:
            return super().add(server)
        seed = np.asarray([server_seed(server)], dtype=np.uint64)
        challenger = mix64_array(self.workload.hashes ^ seed[0])
        return np.where(challenger > self.top, server, self.owners)

    def remove(self, server: int) -> I64:
        """Only the leaver's keys move, each to its second choice."""
        keep = self.ids != server
        owners = self.owners.copy()
        moved = np.flatnonzero(owners == server)
        weights = None if self.weights is None else self.weights[keep]
        index, _ = best(self.workload.hashes[moved], self.seeds[keep], weights)
        owners[moved] = self.ids[keep][index]
        return owners

    def failover(self, load: F64, mode: str = "") -> Failover:
        return RendezvousFailover(self, load)


class RendezvousFailover(KeyFailover):
    """A dead server's keys go to their best live server."""

    def __init__(self, placement: RendezvousPlacement, load: F64) -> None:
        super().__init__(placement.owners, load, int(placement.ids.max()) + 1)
        self.placement = placement

    def _choose(self, keys: I64) -> I64:
        p = self.placement
        live = self.alive[p.ids]
        weights = None if p.weights is None else p.weights[live]
        index, _ = best(p.workload.hashes[keys], p.seeds[live], weights)
        chosen: I64 = p.ids[live][index]
        return chosen
