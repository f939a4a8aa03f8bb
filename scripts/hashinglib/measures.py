"""What the study measures on one placement: balance, movement, failures, shares, lookup time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hashinglib.placement import Failover, Placement, Servers, sum_by
from hashinglib.workload import F64, I64


@dataclass(frozen=True)
class Balance:
    """How uneven the servers' loads are: the largest over the mean, and std over mean."""

    max_mean: float
    cv: float


def per_server(owners: I64, load: F64, servers: Servers) -> F64:
    """Each server's total load, in the order of ``servers``."""
    chosen: F64 = sum_by(owners, load, max(servers.ids) + 1)[list(servers.ids)]
    return chosen


def balance(owners: I64, load: F64, servers: Servers) -> Balance:
    """The ``Balance`` of a placement under a load."""
    totals = per_server(owners, load, servers)
    mean = float(totals.mean())
    return Balance(float(totals.max()) / mean, float(totals.std()) / mean)


def moved(before: I64, after: I64) -> float:
    """The share of keys whose owner changed."""
    return float(np.mean(before != after))


@dataclass(frozen=True)
class Outage:
    """One server killed in a cluster at a given utilisation, and what followed."""

    #: The largest share of the victim's load that one survivor took over.
    top_share: float
    #: The most loaded survivor right after the failover, over the mean load before it.
    worst_after: float
    #: Servers above capacity before anything failed.
    over_before: int
    #: Servers dead once the cascade stops, the victim included.
    fallen: int


def fail_one(failover: Failover, victim: int, capacity: float, mean: float) -> Outage:
    """Kill ``victim``, then, round after round, every server above ``capacity``.

    A server pushed above capacity fails (its queue grows without bound, its
    health checks time out), and its load is rerouted in turn; the cascade
    stops when every live server is within capacity, or nothing is left.
    """
    before = failover.load()
    over_before = int(np.count_nonzero(failover.alive & (before > capacity)))
    lost = float(before[victim])
    failover.kill([victim])
    after = failover.load()
    gained = after - before
    gained[victim] = 0.0
    top_share = float(gained.max()) / lost if lost > 0 else 0.0
    worst_after = float(after.max()) / mean
    while failover.alive.any():
        over = np.flatnonzero(failover.alive & (failover.load() > capacity))
        if not over.size:
            break
        failover.kill(over)
    fallen = int(np.count_nonzero(~failover.alive))
    return Outage(top_share, worst_after, over_before, fallen)


def shares(owners: I64, servers: Servers) -> F64:
    """Each server's share of the keys, in the order of ``servers``."""
    counts = per_server(owners, np.ones(len(owners)), servers)
    out: F64 = counts / counts.sum()
    return out


def lookup_us(placement: Placement, keys: Sequence[bytes], rounds: int = 5) -> float:
    """Wall time of one scalar lookup, from the key's bytes, in microseconds.

    The best of ``rounds`` passes over ``keys``, as timeit does: on a shared
    machine the slower passes measure the neighbours.
    """
    placement.lookup(keys[0])  # builds the cached scalar tables outside the timing
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for key in keys:
            placement.lookup(key)
        best = min(best, time.perf_counter() - start)
    return best / len(keys) * 1e6
