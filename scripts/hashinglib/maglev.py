"""Maglev hashing (Eisenbud et al., NSDI 2016).

Each server walks its own permutation of a prime-sized lookup table and, in
turns, claims the next entry nobody has; a key reads the entry at its hash
modulo the table size. Lookups are one array read and shares differ by at
most one entry, but the table is rebuilt on every change and a few keys of
surviving servers move too (the paper trades that for balance). A weighted
server takes several turns per round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hashinglib.hashing import key_hash, mix64, server_seed
from hashinglib.placement import Failover, Scheme, Servers, TablePlacement, UnitFailover
from hashinglib.workload import F64, I64, Workload

TABLE_SIZE = 65537


def populate(seeds: Sequence[int], turns: Sequence[int], size: int = TABLE_SIZE) -> I64:
    """The lookup table: for each entry, the index (into ``seeds``) of the server owning it."""
    offsets = [s % size for s in seeds]
    skips = [mix64(s) % (size - 1) + 1 for s in seeds]
    entry = [-1] * size
    nxt = [0] * len(seeds)
    filled = 0
    while True:
        for i, (offset, skip) in enumerate(zip(offsets, skips, strict=True)):
            for _ in range(turns[i]):
                j = nxt[i]
                c = (offset + j * skip) % size
                while entry[c] >= 0:
                    j += 1
                    c = (offset + j * skip) % size
                entry[c] = i
                nxt[i] = j + 1
                filled += 1
                if filled == size:
                    return np.asarray(entry, dtype=np.int64)


def build(servers: Servers, alive: Sequence[bool] | None = None) -> I64:
    """The table as server ids, built from the (live) servers."""
    chosen = [
        (s, max(1, round(w)))
        for k, (s, w) in enumerate(zip(servers.ids, servers.weights, strict=True))
        if alive is None or alive[k]
    ]
    table = populate([server_seed(s) for s, _ in chosen], [t for _, t in chosen])
    ids = np.asarray([s for s, _ in chosen], dtype=np.int64)
    built: I64 = ids[table]
    return built


class Maglev(Scheme):
    name = "maglev"
    label = f"Maglev, table {TABLE_SIZE}"

    def place(self, workload: Workload, servers: Servers) -> MaglevPlacement:
        return MaglevPlacement(self, workload, servers, build(servers))


class MaglevPlacement(TablePlacement):
    def __init__(self, scheme: Scheme, workload: Workload, servers: Servers, table: I64) -> None:
        entry_of_key = (workload.hashes % np.uint64(TABLE_SIZE)).astype(np.int64)
        super().__init__(scheme, workload, servers, table, entry_of_key)

    def entry(self, key: bytes) -> int:
        return key_hash(key) % TABLE_SIZE

    def failover(self, load: F64, mode: str = "") -> Failover:
        return MaglevFailover(self, load)


class MaglevFailover(UnitFailover):
    """The table is built again from the live servers."""

    def __init__(self, placement: MaglevPlacement, load: F64) -> None:
        super().__init__(placement.entry_of_key, load, TABLE_SIZE, max(placement.servers.ids) + 1)
        self.servers = placement.servers
        self.unit_owner = placement.table.copy()

    def _reroute(self, dead: I64) -> None:
        self.unit_owner = build(self.servers, [bool(self.alive[s]) for s in self.servers.ids])
