"""Client-side metrics, kept as plain numbers so counting costs next to nothing per call.

Nothing here calls OpenTelemetry: :mod:`slotcache.otel` reads these numbers
through observable instruments when a collection happens (ARCHITECTURE.md
§7: an OTel ``add``/``record`` per call costs 3-7 µs, more than a pipelined
operation itself).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds (seconds) of the latency buckets: 50 µs to 10 s, about x2-x2.5 apart.
LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket: ``counts[i]`` is ``bounds[i-1] < x <= bounds[i]``.

    The last count is everything above the last bound. ``sum`` and ``count``
    give the mean; :meth:`cumulative` gives Prometheus-style ``le`` counts.
    """

    bounds: tuple[float, ...] = LATENCY_BOUNDS_S
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Observations ``<= bounds[i]`` for each bound, then the total (``le="+Inf"``)."""
        out, running = [], 0
        for c in self.counts:
            running += c
            out.append(running)
        return out

    def quantile(self, q: float) -> float:
        """An upper estimate of the ``q`` quantile: the bound of the bucket it falls in."""
        if not self.count:
            return 0.0
        rank = q * self.count
        for bound, running in zip((*self.bounds, float("inf")), self.cumulative(), strict=True):
            if running >= rank:
                return bound
        return float("inf")


@dataclass(slots=True)
class ClientStats:
    """What a client has done so far; read them, export them, never reset them.

    Counters only grow. Under concurrent use from several threads an
    increment can, rarely, be lost: they are for dashboards and tests, not
    for accounting.
    """

    #: MOVED replies followed (each one also patched the slot map).
    redirects: int = 0
    #: Slot maps installed from a Topology reply, the first one included.
    refreshes: int = 0
    #: Refreshes in which no node answered Topology (the old map was kept).
    refresh_failures: int = 0
    #: Calls (or parts of split calls) sent again after UNAVAILABLE.
    retries: int = 0
    #: Calls completed, by operation (``"get"``, ``"mset"``...), failed ones included.
    operations: dict[str, int] = field(default_factory=dict)
    #: Calls that raised, by ``(operation, exception class name)``.
    faults: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Call latency (seconds, retries and redirects included), by operation.
    latency: dict[str, Histogram] = field(default_factory=dict)
    #: Pipeline messages sent, over every node's stream.
    pipeline_messages: int = 0
    #: Operations those messages carried (ops per message = this / pipeline_messages).
    pipeline_ops: int = 0
    #: Unary calls (replica reads, writes with min_replicas, large requests, Topology).
    unary_calls: int = 0
    #: Pipeline streams that broke or ended with operations outstanding.
    stream_failures: int = 0
    #: Reads a replica answered.
    replica_reads: int = 0
    #: Replication lag (ms, operations) the last replica read reported; None before any.
    replica_lag_ms: int | None = None
    replica_lag_ops: int | None = None
    #: Reads answered by the near cache, and reads it could not answer (see docs/client.md).
    near_cache_hits: int = 0
    near_cache_misses: int = 0
    #: Keys the nodes' Subscribe streams said to drop (held or not).
    near_cache_invalidations: int = 0
    #: Times a node's part of the near cache was dropped whole: a flush message, a
    #: sequence gap, or its Subscribe stream lost.
    near_cache_flushes: int = 0
    #: get_or_set: loader calls, early (XFetch) refreshes, callers that joined a running load.
    loader_calls: int = 0
    early_refreshes: int = 0
    single_flight_waits: int = 0

    def record(self, op: str, seconds: float) -> None:
        """Count one completed call of ``op`` and its latency."""
        operations = self.operations
        operations[op] = operations.get(op, 0) + 1
        histogram = self.latency.get(op)
        if histogram is None:
            histogram = self.latency[op] = Histogram()
        histogram.observe(seconds)

    def fault(self, op: str, error: BaseException) -> None:
        """Count one call of ``op`` that raised ``error``."""
        key = (op, type(error).__name__)
        self.faults[key] = self.faults.get(key, 0) + 1

    @property
    def ops_per_message(self) -> float:
        """Operations per Pipeline message so far (0 before any): how well calls coalesce."""
        return self.pipeline_ops / self.pipeline_messages if self.pipeline_messages else 0.0

    def as_dict(self) -> dict[str, float]:
        """Every number by a flat name, e.g. for logs or a custom exporter.

        Scalars keep their names; ``operations.get``, ``faults.get.Unavailable``,
        ``latency.get.count`` and ``latency.get.sum`` flatten the tables.
        """
        out: dict[str, float] = {}
        for name in (
            "redirects",
            "refreshes",
            "refresh_failures",
            "retries",
            "pipeline_messages",
            "pipeline_ops",
            "unary_calls",
            "stream_failures",
            "replica_reads",
            "near_cache_hits",
            "near_cache_misses",
            "near_cache_invalidations",
            "near_cache_flushes",
            "loader_calls",
            "early_refreshes",
            "single_flight_waits",
        ):
            out[name] = getattr(self, name)
        for name in ("replica_lag_ms", "replica_lag_ops"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        for op, count in list(self.operations.items()):
            out[f"operations.{op}"] = count
        for (op, error), count in list(self.faults.items()):
            out[f"faults.{op}.{error}"] = count
        for op, histogram in list(self.latency.items()):
            out[f"latency.{op}.count"] = histogram.count
            out[f"latency.{op}.sum"] = histogram.sum
        return out
