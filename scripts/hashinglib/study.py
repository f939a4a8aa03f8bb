"""The whole study: every scheme, every cluster size, both loads; results as plain data.

Deterministic for a given configuration (the seed draws the keys, the
servers that join, leave and die), except the lookup times, which are wall
clock and so depend on the machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hashinglib.measures import Balance, balance, fail_one, lookup_us, moved, shares
from hashinglib.placement import Placement, Scheme, Servers
from hashinglib.schemes import failure_schemes, placement_schemes, weighted_schemes
from hashinglib.workload import Workload, make_workload

Log = Callable[[str], None]


@dataclass(frozen=True)
class StudyConfig:
    """What to run. The defaults are the published study."""

    keys: int = 1_000_000
    servers: tuple[int, ...] = (3, 10, 100, 1000)
    seed: int = 17
    zipf: float = 1.0
    #: Servers added (one at a time) and removed (one at a time) per cluster size.
    trials: int = 3
    #: Servers killed (one per run, each in a fresh cluster) per cluster size.
    victims: int = 10
    #: Average load over capacity when the failure happens.
    utilisation: float = 0.8
    weights: tuple[float, ...] = (1.0, 2.0, 4.0)
    #: Cluster sizes for the heterogeneous runs: the weights repeat over the servers.
    weighted_servers: tuple[int, ...] = (3, 30)
    #: Keys looked up one by one per scheme for the lookup time (fewer for slow lookups).
    lookup_keys: int = 10_000


SMOKE = StudyConfig(
    keys=20_000, servers=(3, 10, 30), trials=2, victims=3, weighted_servers=(3,), lookup_keys=200
)


@dataclass(frozen=True)
class PlacementResult:
    """One scheme on one cluster size."""

    keys: Balance
    zipf: Balance
    memory_bytes: int
    steps: float
    lookup_us: float
    #: Mean share of keys moved when one server joins / leaves; None if not measured.
    added: float | None
    removed: float | None


@dataclass(frozen=True)
class FailureResult:
    """One scheme (and failover mode) on one cluster size, over every victim tried."""

    top_share: float
    worst_after: float
    over_before: int
    fallen_mean: float
    fallen_max: int
    #: Processes in the cluster: the servers, plus their replicas if it has them.
    processes: int


@dataclass(frozen=True)
class WeightedResult:
    """How one scheme shares keys among servers of different weights."""

    #: Each server's share of the keys.
    shares: list[float]
    #: Total share of the servers of each weight, and what the weights ask for.
    class_shares: dict[str, float]
    class_ideal: dict[str, float]
    #: The largest |share / fair share - 1| of any server.
    max_error: float


@dataclass
class Results:
    """Everything the report and the plots need."""

    config: StudyConfig
    labels: dict[str, str] = field(default_factory=dict)
    placement: dict[str, dict[int, PlacementResult]] = field(default_factory=dict)
    failure: dict[str, dict[int, FailureResult]] = field(default_factory=dict)
    weighted: dict[int, dict[str, WeightedResult]] = field(default_factory=dict)
    hottest_key_share: float = 0.0
    wall_s: float = 0.0


def failure_name(scheme: Scheme, mode: str) -> str:
    """The row name of a scheme's failover mode."""
    return scheme.name if not mode else f"{scheme.name}+{mode}"


def failure_label(scheme: Scheme, mode: str) -> str:
    """How the doc names a scheme's failover mode."""
    words = {"replica": "replica takes over", "rebalance": "no replica, slots given out"}
    return scheme.label if not mode else f"{scheme.label}; {words[mode]}"


def capacity(total: float, servers: int, utilisation: float) -> float:
    """A server's capacity when the average server runs at ``utilisation``, in whole keys."""
    return float(math.ceil(total / (servers * utilisation) - 1e-9))


def _moves(
    placement: Placement, joining: list[int], leaving: list[int]
) -> tuple[float | None, float | None]:
    # The what-if slot count has no planner to move its slots: nothing to measure.
    try:
        added = float(np.mean([moved(placement.owners, placement.add(s)) for s in joining]))
        removed = float(np.mean([moved(placement.owners, placement.remove(s)) for s in leaving]))
    except NotImplementedError:
        return None, None
    return added, removed


def _lookup_keys(workload: Workload, placement: Placement, wanted: int) -> list[bytes]:
    # Slow lookups (rendezvous over 1000 servers) get fewer keys, to bound the time spent.
    count = max(20, min(wanted, int(wanted * 20 / max(placement.steps_per_lookup, 1.0))))
    return workload.keys[: min(count, workload.size)]


def study_size(workload: Workload, n: int, config: StudyConfig, results: Results, log: Log) -> None:
    """Every measure on clusters of ``n`` equal servers."""
    servers = Servers.uniform(n)
    rng = np.random.default_rng([config.seed, n])
    victims = sorted(int(v) for v in rng.choice(n, size=min(config.victims, n), replace=False))
    leaving = victims[: config.trials]
    joining = list(range(n, n + config.trials))
    keys = workload.load("keys")
    cap = capacity(float(workload.size), n, config.utilisation)
    failing = {s.name for s in failure_schemes()}
    for scheme in placement_schemes():
        if scheme.max_servers is not None and n > scheme.max_servers:
            continue
        started = time.perf_counter()
        placement = scheme.place(workload, servers)
        added, removed = _moves(placement, joining, leaving)
        sample = _lookup_keys(workload, placement, config.lookup_keys)
        results.labels[scheme.name] = scheme.label
        results.placement.setdefault(scheme.name, {})[n] = PlacementResult(
            keys=balance(placement.owners, keys, servers),
            zipf=balance(placement.owners, workload.load("zipf"), servers),
            memory_bytes=placement.memory_bytes,
            steps=placement.steps_per_lookup,
            lookup_us=lookup_us(placement, sample),
            added=added,
            removed=removed,
        )
        if scheme.name in failing:
            study_failures(placement, victims, cap, workload.size / n, results)
        log(f"N={n} {scheme.name}: {time.perf_counter() - started:.1f} s")


def study_failures(
    placement: Placement, victims: list[int], cap: float, mean: float, results: Results
) -> None:
    """Kill each victim in turn, in a fresh cluster, for each failover mode of the placement."""
    keys = placement.workload.load("keys")
    n = placement.servers.count
    for mode in placement.failover_modes:
        outages = [fail_one(placement.failover(keys, mode), v, cap, mean) for v in victims]
        name = failure_name(placement.scheme, mode)
        results.labels[name] = failure_label(placement.scheme, mode)
        results.failure.setdefault(name, {})[n] = FailureResult(
            top_share=float(np.mean([o.top_share for o in outages])),
            worst_after=max(o.worst_after for o in outages),
            over_before=max(o.over_before for o in outages),
            fallen_mean=float(np.mean([o.fallen for o in outages])),
            fallen_max=max(o.fallen for o in outages),
            processes=n * (2 if mode == "replica" else 1),
        )


def study_weights(workload: Workload, n: int, config: StudyConfig, results: Results) -> None:
    """Every scheme on ``n`` servers whose weights repeat ``config.weights``."""
    weights = [config.weights[i % len(config.weights)] for i in range(n)]
    servers = Servers.weighted(weights)
    fair = servers.shares()
    total = sum(weights)
    ideal = {f"{w:g}": sum(x for x in weights if x == w) / total for w in config.weights}
    out: dict[str, WeightedResult] = {}
    for scheme in weighted_schemes():
        got = shares(scheme.place(workload, servers).owners, servers)
        results.labels[scheme.name] = scheme.label
        out[scheme.name] = WeightedResult(
            shares=[float(x) for x in got],
            class_shares={
                f"{w:g}": float(sum(g for g, x in zip(got, weights, strict=True) if x == w))
                for w in config.weights
            },
            class_ideal=ideal,
            max_error=float(np.max(np.abs(got / fair - 1.0))),
        )
    results.weighted[n] = out


def run_study(config: StudyConfig, log: Log = lambda _: None) -> Results:
    """Run everything ``config`` asks for."""
    started = time.perf_counter()
    workload = make_workload(config.keys, config.seed, config.zipf)
    log(f"{workload.size} keys hashed in {time.perf_counter() - started:.1f} s")
    results = Results(config=config, hottest_key_share=float(workload.zipf[0]))
    for n in config.servers:
        study_size(workload, n, config, results, log)
    for n in config.weighted_servers:
        study_weights(workload, n, config, results)
        log(f"weights, N={n}: done")
    results.wall_s = time.perf_counter() - started
    return results
