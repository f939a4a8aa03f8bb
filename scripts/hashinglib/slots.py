"""slotcache's own scheme: 16384 fixed slots, a slot table, replicas and the rebalance planner.

A key's slot is Redis Cluster's (``key_slot`` from ``slotcache.contract``,
which the server, the SDK and clusterctl all use), and which primary
serves a slot is a table the cluster agrees on. The
table starts as ``clusterctl create`` makes it (``split_slots``: contiguous,
near-equal ranges) and changes only when ``clusterctl rebalance`` moves
slots, by the planner the command uses (``plan_rebalance``): by slot count
and weight, or by the keys each slot holds. A joining server gets its slots
from that planner; a leaving one gives its slots away through it (weight 0,
as before ``del-node``).

On a failure, one of two things happens:

- ``replica``: each primary has a replica of its own (a separate process
  that carries no primary load); it is promoted and takes the dead primary's
  slots whole. A promoted replica has no replica left.
- ``rebalance``: a primary without a replica leaves its slots without an
  owner; they are given one by one to the live primary with the fewest slots,
  the rule ``clusterctl fix`` follows for slots nobody holds keys of.
"""

from __future__ import annotations

import heapq
import itertools
from binascii import crc_hqx

import numpy as np

from hashinglib.placement import Failover, Scheme, Servers, TablePlacement, UnitFailover
from hashinglib.workload import F64, I64, Workload
from slotcache.contract import SLOT_COUNT, hash_tag, key_slot, split_slots
from slotcache.ctl.rebalance_plan import (
    PrimaryLoad,
    SlotStat,
    Unit,
    apply_moves,
    plan_rebalance,
)

FAILOVER_MODES = ("replica", "rebalance")
BY_KEYS_MAX_SERVERS = 250


def even_table(servers: Servers, slot_count: int = SLOT_COUNT) -> I64:
    """The slot table ``clusterctl create`` makes: contiguous near-equal ranges, in order."""
    table = np.empty(slot_count, dtype=np.int64)
    if slot_count == SLOT_COUNT:
        ranges = split_slots(servers.count)
    else:
        # The what-if table: the same split rule, on more slots.
        edges = np.linspace(0, slot_count, servers.count + 1).round().astype(int)
        ranges = [(int(a), int(b) - 1) for a, b in itertools.pairwise(edges)]
    for server, (first, last) in zip(servers.ids, ranges, strict=True):
        table[first : last + 1] = server
    return table


def slot_stats(workload: Workload) -> dict[int, SlotStat]:
    """Keys per slot, as SlotStats reports them to the planner."""
    counts = np.bincount(workload.slots, minlength=SLOT_COUNT)
    return {slot: SlotStat(keys=int(n)) for slot, n in enumerate(counts) if n}


def rebalanced(
    table: I64,
    servers: Servers,
    unit: Unit,
    stats: dict[int, SlotStat],
    weights: dict[int, float],
    use_empty: bool = False,
) -> I64:
    """The table after ``clusterctl rebalance`` by ``unit`` with ``weights``."""
    primaries = [
        PrimaryLoad(str(s), tuple(int(x) for x in np.flatnonzero(table == s))) for s in servers.ids
    ]
    plan = plan_rebalance(
        primaries,
        stats,
        unit=unit,
        weights={str(s): w for s, w in weights.items()},
        use_empty=use_empty,
    )
    after = apply_moves({p.id: p.slots for p in primaries}, plan.moves)
    out = table.copy()
    for server, owned in after.items():
        out[list(owned)] = int(server)
    return out


class Slots(Scheme):
    """Fixed slots: split evenly, then (``rebalance``) levelled by the planner.

    ``slot_count`` other than 16384 is a what-if that hashes with the whole
    CRC16 instead of its low 14 bits; the planner knows 16384 slots only, so
    that variant is placed but not moved.

    By keys, the planner compares every over-loaded with every under-loaded
    primary at each move, so its time grows steeply with the cluster (about
    20 s for 400 primaries, minutes for 1000): the study stops at
    ``BY_KEYS_MAX_SERVERS``.
    """

    def __init__(self, rebalance: Unit | None = None, slot_count: int = SLOT_COUNT) -> None:
        self.rebalance = rebalance
        self.slot_count = slot_count
        self.name = "slots" if rebalance is None else f"slots-by-{rebalance}"
        if slot_count != SLOT_COUNT:
            self.name += f"-{slot_count}"
        how = {
            None: "split evenly",
            "slots": "rebalanced by weight",
            "keys": "rebalanced by keys",
            "memory": "rebalanced by memory",
        }[rebalance]
        self.label = f"{slot_count} slots, {how}"
        if rebalance == "keys":
            self.max_servers = BY_KEYS_MAX_SERVERS
        if slot_count != SLOT_COUNT:
            self.label += " (what-if)"

    def slots_of(self, workload: Workload) -> I64:
        """Each key's slot."""
        return workload.slots if self.slot_count == SLOT_COUNT else workload.crc16

    def place(self, workload: Workload, servers: Servers) -> SlotPlacement:
        table = even_table(servers, self.slot_count)
        if self.rebalance is not None and (self.rebalance != "slots" or not servers.equal):
            table = rebalanced(
                table,
                servers,
                self.rebalance,
                slot_stats(workload),
                dict(zip(servers.ids, servers.weights, strict=True)),
            )
        return SlotPlacement(self, workload, servers, table)


class SlotPlacement(TablePlacement):
    failover_modes = FAILOVER_MODES

    def __init__(self, scheme: Slots, workload: Workload, servers: Servers, table: I64) -> None:
        super().__init__(scheme, workload, servers, table, scheme.slots_of(workload))
        self.slot_scheme = scheme

    def entry(self, key: bytes) -> int:
        if self.slot_scheme.slot_count == SLOT_COUNT:
            return key_slot(key)
        return crc_hqx(hash_tag(key), 0) % len(self.table)

    def _moved_by_planner(self, servers: Servers, weights: dict[int, float]) -> I64:
        if self.slot_scheme.slot_count != SLOT_COUNT:
            raise NotImplementedError("the planner moves 16384 slots only")
        unit: Unit = self.slot_scheme.rebalance or "slots"
        table = rebalanced(
            self.table, servers, unit, slot_stats(self.workload), weights, use_empty=True
        )
        return table[self.entry_of_key]

    def add(self, server: int) -> I64:
        """``add-node`` (empty), then ``rebalance --use-empty-primaries``."""
        servers = self.servers.plus(server)
        return self._moved_by_planner(servers, dict(zip(servers.ids, servers.weights, strict=True)))

    def remove(self, server: int) -> I64:
        """``rebalance --weight <leaver>=0`` before ``del-node``."""
        weights = dict(zip(self.servers.ids, self.servers.weights, strict=True))
        weights[server] = 0.0
        return self._moved_by_planner(self.servers, weights)

    def failover(self, load: F64, mode: str = "replica") -> Failover:
        return SlotFailover(self, load, replicas=mode == "replica")


class SlotFailover(UnitFailover):
    """Slots of a dead primary go to its replica, or, without one, are given out as fix does.

    Replica of primary ``i`` (of ``n``) has id ``n + i``.
    """

    def __init__(self, placement: SlotPlacement, load: F64, replicas: bool) -> None:
        self.primaries = max(placement.servers.ids) + 1
        size = self.primaries * (2 if replicas else 1)
        super().__init__(placement.entry_of_key, load, len(placement.table), size)
        self.unit_owner = placement.table.copy()
        self.replicas = replicas
        self.promoted: set[int] = set()

    def _reroute(self, dead: I64) -> None:
        orphans: list[int] = []
        for server in sorted(int(d) for d in dead):
            slots = np.flatnonzero(self.unit_owner == server)
            replica = server + self.primaries
            if self.replicas and server < self.primaries and self.alive[replica]:
                self.unit_owner[slots] = replica
                self.promoted.add(replica)
            else:
                orphans.extend(int(s) for s in slots)
        if orphans:
            self._give_out(sorted(orphans))

    def _give_out(self, slots: list[int]) -> None:
        """Each slot to the live primary with the fewest slots (then the lowest id)."""
        owners = self.unit_owner[self.alive[self.unit_owner]]
        counts = np.bincount(owners, minlength=len(self.alive))
        primaries = [
            s
            for s in range(len(self.alive))
            if self.alive[s] and (s < self.primaries or s in self.promoted)
        ]
        heap = [(int(counts[s]), s) for s in primaries]
        if not heap:
            return
        heapq.heapify(heap)
        for slot in slots:
            count, server = heapq.heappop(heap)
            self.unit_owner[slot] = server
            heapq.heappush(heap, (count + 1, server))
