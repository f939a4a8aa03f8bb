"""Jump consistent hash (Lamping and Veach, 2014).

A key's bucket among ``n`` comes from a short pseudo-random walk seeded by
its hash: no table at all, perfectly even shares in expectation, and only
1/(n+1) of the keys move when bucket n is added. Buckets are numbers, not
names: only the last one can leave cleanly. Removing any other server means
renumbering (here the last server takes the leaver's number, as one would
do in practice), and a failure is handled by hashing the keys of a dead
bucket again until they land on a live one, which spreads them evenly
without moving anyone else's keys. Weights are given as several buckets
per server.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from hashinglib.hashing import GOLDEN, MASK64, U64, key_hash, mix64_array
from hashinglib.placement import (
    Failover,
    KeyFailover,
    Placement,
    Scheme,
    Servers,
    owner_bytes,
)
from hashinglib.workload import F64, I64, Workload

_LCG = 2862933555777941757
_TWO31 = float(1 << 31)


def jump_scalar(key: int, buckets: int) -> int:
    """The reference algorithm, on one 64-bit key."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _LCG + 1) & MASK64
        j = int((b + 1) * (_TWO31 / float((key >> 33) + 1)))
    return b


def jump_array(keys: U64, buckets: int) -> tuple[I64, int]:
    """``jump_scalar`` of every key, and the total number of loop iterations it took."""
    key = keys.copy()
    b = np.full(len(keys), -1, dtype=np.int64)
    j = np.zeros(len(keys), dtype=np.int64)
    active = np.arange(len(keys))
    iterations = 0
    while active.size:
        iterations += active.size
        b[active] = j[active]
        k = key[active] * np.uint64(_LCG) + np.uint64(1)
        key[active] = k
        step = _TWO31 / ((k >> np.uint64(33)).astype(np.float64) + 1.0)
        j_new = ((b[active] + 1).astype(np.float64) * step).astype(np.int64)
        j[active] = j_new
        active = active[j_new < buckets]
    return b, iterations


def retry_hash(hashes: U64, attempt: I64) -> U64:
    """The hash a key tries on its ``attempt``-th retry after landing on a dead bucket."""
    return mix64_array(hashes + attempt.astype(np.uint64) * np.uint64(GOLDEN))


class Jump(Scheme):
    name = "jump"
    label = "jump hash"

    def place(self, workload: Workload, servers: Servers) -> JumpPlacement:
        counts = [max(1, round(w)) for w in servers.weights]
        buckets = np.repeat(np.asarray(servers.ids, dtype=np.int64), counts)
        return JumpPlacement(self, workload, servers, buckets)


class JumpPlacement(Placement):
    def __init__(self, scheme: Scheme, workload: Workload, servers: Servers, buckets: I64) -> None:
        index, iterations = jump_array(workload.hashes, len(buckets))
        super().__init__(scheme, workload, servers, buckets[index])
        self.buckets = buckets
        self.iterations = iterations / max(workload.size, 1)

    @property
    def memory_bytes(self) -> int:
        # The bucket -> server table; nothing else.
        return len(self.buckets) * owner_bytes(self.servers.count)

    @property
    def steps_per_lookup(self) -> float:
        return self.iterations

    @cached_property
    def _bucket_list(self) -> list[int]:
        return list(self.buckets.tolist())

    def lookup(self, key: bytes) -> int:
        return self._bucket_list[jump_scalar(key_hash(key), len(self.buckets))]

    def remove(self, server: int) -> I64:
        """Renumber: the last bucket's server takes the leaver's number."""
        buckets = [int(b) for b in self.buckets]
        while server in buckets:
            last = buckets.pop()
            if last != server:
                buckets[buckets.index(server)] = last
        table = np.asarray(buckets, dtype=np.int64)
        return table[jump_array(self.workload.hashes, len(table))[0]]

    def failover(self, load: F64, mode: str = "") -> Failover:
        return JumpFailover(self, load)


class JumpFailover(KeyFailover):
    """Keys of a dead bucket hash again, attempt after attempt, until one lands on a live one."""

    def __init__(self, placement: JumpPlacement, load: F64) -> None:
        super().__init__(placement.owners, load, max(placement.servers.ids) + 1)
        self.hashes = placement.workload.hashes
        self.buckets = placement.buckets
        self.attempts = np.zeros(len(self.owners), dtype=np.int64)

    def _choose(self, keys: I64) -> I64:
        owners = self.owners[keys].copy()
        pending = np.arange(len(keys))
        while pending.size:
            idx = keys[pending]
            self.attempts[idx] += 1
            buckets, _ = jump_array(
                retry_hash(self.hashes[idx], self.attempts[idx]), len(self.buckets)
            )
            owners[pending] = self.buckets[buckets]
            pending = pending[~self.alive[owners[pending]]]
        return owners
