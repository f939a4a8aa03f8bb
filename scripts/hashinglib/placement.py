"""What every scheme provides: a placement of the keys, its lookup, and its failover.

A ``Scheme`` places a ``Workload`` on ``Servers``. The ``Placement`` it
returns knows each key's owner, how to look one key up (as a client would),
what its routing structure costs, where keys go when a server joins or
leaves, and how the cluster reroutes when servers die (``Failover``).
Adding and removing default to placing again from scratch, which is what a
stateless scheme does; schemes with a cheaper or a different rule (jump
hash renumbering its buckets, slots moved by the rebalance planner)
override them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from hashinglib.workload import F64, I64, Workload

Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Servers:
    """Server ids (stable names: a server keeps its id in every cluster) and their weights."""

    ids: tuple[int, ...]
    weights: tuple[float, ...]

    @classmethod
    def uniform(cls, count: int) -> Servers:
        """``count`` servers of weight 1, ids ``0..count-1``."""
        return cls(tuple(range(count)), (1.0,) * count)

    @classmethod
    def weighted(cls, weights: Sequence[float]) -> Servers:
        """One server per weight, ids ``0..len-1``."""
        return cls(tuple(range(len(weights))), tuple(float(w) for w in weights))

    @property
    def count(self) -> int:
        """How many servers."""
        return len(self.ids)

    @property
    def equal(self) -> bool:
        """Whether every weight is the same (the unweighted form of a scheme applies)."""
        return len(set(self.weights)) <= 1

    def shares(self) -> F64:
        """Each server's fair share of the load: its weight over the total."""
        w = np.asarray(self.weights)
        shares: F64 = w / w.sum()
        return shares

    def plus(self, server: int, weight: float = 1.0) -> Servers:
        """These servers and one more."""
        return Servers((*self.ids, server), (*self.weights, weight))

    def without(self, server: int) -> Servers:
        """These servers but one."""
        keep = [i for i, s in enumerate(self.ids) if s != server]
        return Servers(tuple(self.ids[i] for i in keep), tuple(self.weights[i] for i in keep))


def sum_by(index: I64, weights: F64, size: int) -> F64:
    """``weights`` added up per value of ``index`` (0..size-1): loads per server or per unit."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)


def owner_bytes(servers: int) -> int:
    """Bytes of the smallest unsigned integer that can name each of ``servers``."""
    return 1 if servers <= 1 << 8 else 2 if servers <= 1 << 16 else 4


def binary_search_steps(entries: int) -> float:
    """Comparisons a binary search over ``entries`` sorted values makes."""
    return float(math.ceil(math.log2(max(entries, 2))))


class Failover(ABC):
    """A cluster that loses servers and routes around them as its scheme does.

    Server ids index the arrays; ``size`` may exceed the servers placed on
    (replicas that are promoted get ids of their own).
    """

    def __init__(self, size: int) -> None:
        self.alive: Bools = np.ones(size, dtype=bool)

    @abstractmethod
    def _raw_load(self) -> F64:
        """Load per server id as routed now (dead servers may show stale values)."""

    @abstractmethod
    def _reroute(self, dead: I64) -> None:
        """Move what the newly dead servers carried, as the scheme does."""

    def load(self) -> F64:
        """Load per server id; 0 for a dead server."""
        return np.where(self.alive, self._raw_load(), 0.0)

    def kill(self, ids: Sequence[int] | I64) -> None:
        """Servers ``ids`` fail now."""
        dead = np.asarray(ids, dtype=np.int64)
        self.alive[dead] = False
        if self.alive.any():
            self._reroute(dead)


class KeyFailover(Failover):
    """Failover decided key by key: each key of a dead server picks a new owner."""

    def __init__(self, owners: I64, load: F64, size: int) -> None:
        super().__init__(size)
        self.owners = owners.copy()
        self.key_load = load

    def _raw_load(self) -> F64:
        return sum_by(self.owners, self.key_load, len(self.alive))

    def _reroute(self, dead: I64) -> None:
        moved = np.flatnonzero(~self.alive[self.owners])
        if moved.size:
            self.owners[moved] = self._choose(moved)

    @abstractmethod
    def _choose(self, keys: I64) -> I64:
        """New live owners for the keys at indexes ``keys`` (in arrival order)."""


class UnitFailover(Failover):
    """Failover decided per routing unit (a ring point, a table entry, a slot).

    Every key of a unit goes where the unit goes, so a cascade costs work in
    proportion to the units, not to the million keys.
    """

    def __init__(self, unit_of_key: I64, load: F64, units: int, size: int) -> None:
        super().__init__(size)
        self.unit_load = sum_by(unit_of_key, load, units)
        self.unit_owner: I64 = np.zeros(units, dtype=np.int64)

    def _raw_load(self) -> F64:
        return sum_by(self.unit_owner, self.unit_load, len(self.alive))


class Placement(ABC):
    """Where one scheme put every key of a workload, on given servers."""

    #: The ways this placement can react to a failure (most schemes have one, "").
    failover_modes: tuple[str, ...] = ("",)

    def __init__(self, scheme: Scheme, workload: Workload, servers: Servers, owners: I64) -> None:
        self.scheme = scheme
        self.workload = workload
        self.servers = servers
        self.owners = owners

    @property
    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes of the routing structure a client holds, packed as a C program would."""

    @property
    @abstractmethod
    def steps_per_lookup(self) -> float:
        """The work of one lookup in the scheme's own unit (probes, hashes, iterations)."""

    @abstractmethod
    def lookup(self, key: bytes) -> int:
        """The owner of one key, computed as a client would, from the key's bytes."""

    @abstractmethod
    def failover(self, load: F64, mode: str = "") -> Failover:
        """A cluster in this placement, carrying ``load`` per key, ready to lose servers."""

    def add(self, server: int) -> I64:
        """Owners once ``server`` (weight 1) joins."""
        return self.scheme.place(self.workload, self.servers.plus(server)).owners

    def remove(self, server: int) -> I64:
        """Owners once ``server`` leaves, as planned (not a failure)."""
        return self.scheme.place(self.workload, self.servers.without(server)).owners


class TablePlacement(Placement):
    """A placement read from a table: a key's entry, then the entry's owner (Maglev, slots)."""

    def __init__(
        self, scheme: Scheme, workload: Workload, servers: Servers, table: I64, entry_of_key: I64
    ) -> None:
        super().__init__(scheme, workload, servers, table[entry_of_key])
        self.table = table
        self.entry_of_key = entry_of_key

    @abstractmethod
    def entry(self, key: bytes) -> int:
        """The table entry of one key, from its bytes."""

    @property
    def memory_bytes(self) -> int:
        return len(self.table) * owner_bytes(self.servers.count)

    @property
    def steps_per_lookup(self) -> float:
        return 1.0

    @cached_property
    def _table_list(self) -> list[int]:
        return list(self.table.tolist())

    def lookup(self, key: bytes) -> int:
        return self._table_list[self.entry(key)]


class Scheme(ABC):
    """A rule that places keys on servers."""

    #: Short name used in results and on plots.
    name: str
    #: How the doc's tables name it.
    label: str
    #: The largest cluster it is run on (None: every size), when a size would take too long.
    max_servers: int | None = None

    @abstractmethod
    def place(self, workload: Workload, servers: Servers) -> Placement:
        """Put every key of ``workload`` on one of ``servers``."""
