"""Routing: what reaching a key through a cluster costs, slotcache against itself in one run.

Two comparisons, both with the load shapes of W1 (64 asyncio tasks, GET/SET
50/50) and W3 (one blocking caller), so the figures line up with those rows:

- ``cluster3 ÷ single``: W1 through a smart AsyncClient against a 3-primary
  cluster, against one standalone node. Every call still goes straight to its
  owner, so this is the cost of routing in the client (hashing each key to a
  slot, a channel per node) and of the cluster machinery in the servers. On a
  machine with fewer cores than processes it also includes three servers and
  the load generator competing for CPU; the workload's note says which case
  the run was.
- ``forwarded ÷ direct``: the same cluster, through a proxy-mode client
  pointed at node 0, against the smart client. Node 0 forwards every call for
  a slot it does not own (about 2/3 of them) over a pooled peer channel, one
  more gRPC hop (ARCHITECTURE.md §2). W1 gives throughput and CPU per
  operation, W3 the latency a single caller sees (p50/p99).

The sides are measured in alternating rounds by the same loop as W1/W3 and
the ``direct`` side of W1 serves both comparisons, so the two ratios share
one measurement of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from benchlib.client_workloads import (
    W1,
    W3,
    ClientWorkload,
    Figures,
    LoadSpec,
    Side,
    bound,
    load_details,
    measure,
    window_details,
)
from benchlib.loops import LoopResult
from benchlib.peers import Target, slotcache_stats
from benchlib.results import Metric, MetricDef, WorkloadResult, compare
from benchlib.shared_servers import SharedServers
from benchlib.stats import per_item

PRIMARIES = 3
TITLE = f"routing overhead, {PRIMARIES}-primary cluster"
REFERENCE = "1 node / direct"
SINGLE, DIRECT, FORWARDED = "single", "direct", "forwarded"
# W3 is here for the latency a forwarded call adds; its throughput is 1/mean latency.
W3_METRICS = tuple(m for m in W3.metrics if m.name in ("p50_us", "p99_us", "server_cpu_us_per_op"))


@dataclass(frozen=True)
class Pair:
    """Two measured sides whose figures are divided, and the names the table shows for them."""

    numerator: str
    denominator: str
    shown: tuple[str, str]

    @property
    def name(self) -> str:
        """The suffix of the pair's metric names, e.g. ``forwarded_vs_direct``."""
        return f"{self.shown[0]}_vs_{self.shown[1]}"


# The direct side is the smart client on the cluster: "cluster3" against one node.
CLUSTER_VS_SINGLE = Pair(DIRECT, SINGLE, (f"cluster{PRIMARIES}", SINGLE))
FORWARDED_VS_DIRECT = Pair(FORWARDED, DIRECT, (FORWARDED, DIRECT))


def paired_metrics(
    load: ClientWorkload,
    defs: Sequence[MetricDef],
    figures: Mapping[str, Figures],
    pair: Pair,
) -> list[Metric]:
    """``defs`` of ``load``, the pair's numerator side against its denominator side.

    Names are prefixed with the load and suffixed with the pair (e.g.
    ``w1_ops_per_s_cluster3_vs_single``) so every row has its own JSON key.
    """
    return [
        replace(
            m,
            name=f"{load.key}_{m.name}_{pair.name}",
            label=f"{load.key.upper()} {m.label}",
            sides=pair.shown,
        )
        for m in compare(defs, figures[pair.numerator], figures[pair.denominator])
    ]


def ok_ops(stats: Mapping[str, int]) -> int:
    """Successful operations a node has counted (``ops.<op>.ok``), whoever sent them."""
    return sum(n for name, n in stats.items() if name.startswith("ops.") and name.endswith(".ok"))


@dataclass
class ForwardTally:
    """Calls the proxy client's entry node answered, and how many of them it forwarded.

    The entry node counts every call it answers, served or forwarded; the
    other nodes count only what was forwarded to them, because no client
    talks to them directly while the proxy side runs.
    """

    answered: int = 0
    forwarded: int = 0

    def add(self, before: Sequence[Mapping[str, int]], after: Sequence[Mapping[str, int]]) -> None:
        """Add the growth of every node's counters; node 0 is the entry."""
        grown = [ok_ops(a) - ok_ops(b) for b, a in zip(before, after, strict=True)]
        self.answered += grown[0]
        self.forwarded += sum(grown[1:])

    @property
    def share(self) -> float | None:
        """Fraction of calls that took the extra hop; None before anything was counted."""
        return per_item(self.forwarded, self.answered)


def counting_forwards(side: Side, target: Target, tally: ForwardTally) -> Side:
    """``side``, with the cluster's counters read around each of its runs into ``tally``.

    This shows that the forwarded side really was forwarded, and how much of
    it, from the servers' own counts (warm-up included, which does not change
    the share). The reads are outside the measured windows.
    """

    def run(spec: LoadSpec) -> LoopResult:
        before = [slotcache_stats(node) for node in target.nodes]
        result = side(spec)
        tally.add(before, [slotcache_stats(node) for node in target.nodes])
        return result

    return run


def contention_note(cpus: int | None, primaries: int) -> str:
    """Whether the cluster's processes and the load generator had a core each, and what follows.

    With fewer cores, ``cluster3 ÷ single`` mixes routing cost with CPU
    contention and says nothing about how a cluster scales across machines.
    """
    setup = (
        f"the {primaries}-node cluster runs {primaries} server processes plus the load "
        f"generator on this machine's {cpus or '?'} CPU cores (the single node: one plus the "
        "load generator)"
    )
    if cpus is not None and cpus >= primaries + 1:
        return f"{setup}, so each can have a core of its own if nothing else runs."
    return (
        f"{setup}, so they compete for CPU: cluster{primaries} ÷ single includes that "
        "contention and is not a measure of how a cluster scales across machines. "
        "forwarded ÷ direct runs on the same cluster, so both of its sides share it."
    )


def forwarding_note(shares: Mapping[str, float | None]) -> str:
    """How much of each load the proxy client's entry node forwarded, per the nodes' counters."""
    parts = [
        f"{'?' if share is None else f'{share:.1%}'} in {load.upper()}"
        for load, share in shares.items()
    ]
    return (
        "the proxy client's entry node forwarded "
        + ", ".join(parts)
        + " of its calls to the owning node (counted by the nodes)."
    )


def redirect_note(windows: Mapping[str, Mapping[str, object]]) -> str | None:
    """A warning naming the sides whose client followed MOVED in a measured window."""
    moved = {side: w.get("redirects") for side, w in windows.items()}
    hit = {side: n for side, n in moved.items() if isinstance(n, int) and n > 0}
    if not hit:
        return None
    listed = ", ".join(f"{side}: {n}" for side, n in hit.items())
    return (
        f"clients followed MOVED during measured windows ({listed}): the slot map changed "
        "mid-run, so some calls paid an extra round trip."
    )


def run(servers: SharedServers, spec: LoadSpec) -> WorkloadResult:
    """Measure single, direct and forwarded with W1, and direct and forwarded with W3.

    The standalone node is the one W1-W3 use; the cluster is loaded once and
    reached both ways.
    """
    single = servers.loaded(servers.slotcache())
    direct = servers.loaded(servers.cluster(PRIMARIES))
    forwarded = replace(direct, routing="proxy")
    tallies = {W1.key: ForwardTally(), W3.key: ForwardTally()}

    def sides(load: ClientWorkload, targets: Mapping[str, Target]) -> dict[str, Side]:
        out = {side: bound(load, target) for side, target in targets.items()}
        out[FORWARDED] = counting_forwards(out[FORWARDED], forwarded, tallies[load.key])
        return out

    w1 = measure(sides(W1, {SINGLE: single, DIRECT: direct, FORWARDED: forwarded}), spec)
    w3 = measure(sides(W3, {DIRECT: direct, FORWARDED: forwarded}), spec)
    w1_figures = {side: W1.figures(res, spec) for side, res in w1.items()}
    w3_figures = {side: W3.figures(res, spec) for side, res in w3.items()}
    metrics = [
        *paired_metrics(W1, W1.metrics, w1_figures, CLUSTER_VS_SINGLE),
        *paired_metrics(W1, W1.metrics, w1_figures, FORWARDED_VS_DIRECT),
        *paired_metrics(W3, W3_METRICS, w3_figures, FORWARDED_VS_DIRECT),
    ]
    # Flat "<load> <side>" keys: the footer looks for background load one level down.
    windows = {
        **{f"{W1.key} {side}": window_details(res) for side, res in w1.items()},
        **{f"{W3.key} {side}": window_details(res) for side, res in w3.items()},
    }
    shares = {load: tally.share for load, tally in tallies.items()}
    if not all(shares.values()):
        raise RuntimeError(f"the proxy client's calls were not forwarded (shares {shares})")
    notes = [contention_note(os.cpu_count(), PRIMARIES), forwarding_note(shares)]
    moved = redirect_note(windows)
    if moved is not None:
        notes.append(moved)
    return WorkloadResult(
        "routing",
        TITLE,
        REFERENCE,
        metrics,
        details={
            "primaries": PRIMARIES,
            "load": {W1.key: load_details(W1, spec), W3.key: load_details(W3, spec)},
            "forwarded_share": shares,
            "addresses": {
                SINGLE: single.address,
                "cluster": direct.seeds,
                "entry": forwarded.address,
            },
            "pids": {
                SINGLE: single.pid,
                **{f"cluster node{i}": pid for i, pid in enumerate(direct.pids)},
            },
            **windows,
        },
        notes=notes,
    )
