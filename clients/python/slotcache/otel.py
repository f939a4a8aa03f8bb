"""Export a client's metrics through OpenTelemetry observable instruments.

The client counts in plain ints (:class:`slotcache.ClientStats`); nothing on
the request path calls OpenTelemetry (ARCHITECTURE.md §7: an ``add`` or
``record`` costs 3-7 µs, more than a pipelined operation). This module
registers observable instruments whose callbacks read those numbers when the
SDK collects, e.g. every 60 s::

    from opentelemetry.sdk.metrics import MeterProvider
    handle = slotcache.otel.instrument(client, meter_provider=provider,
                                       attributes={"cache": "sessions"})
    ...
    handle.close()  # stop reporting (instruments cannot be unregistered in OTel)

Latency is exported Prometheus-style, since OpenTelemetry has no observable
histogram: ``slotcache.client.operation.duration.bucket`` (cumulative count
per ``le`` bound, in seconds), ``...duration.sum`` and ``...duration.count``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from slotcache._stats import ClientStats

__all__ = ["Instrumentation", "instrument"]

PREFIX = "slotcache.client."

# Monotonic counters read straight from a ClientStats attribute: name, attribute, unit, meaning.
_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("redirects", "redirects", "{redirect}", "MOVED replies followed"),
    ("retries", "retries", "{retry}", "calls resent after UNAVAILABLE"),
    ("refreshes", "refreshes", "{refresh}", "slot maps installed"),
    ("refresh_failures", "refresh_failures", "{refresh}", "refreshes no node answered"),
    ("pipeline.messages", "pipeline_messages", "{message}", "Pipeline messages sent"),
    ("pipeline.operations", "pipeline_ops", "{operation}", "operations in Pipeline messages"),
    ("unary_calls", "unary_calls", "{call}", "unary calls made"),
    ("stream_failures", "stream_failures", "{stream}", "Pipeline streams that broke"),
    ("replica_reads", "replica_reads", "{read}", "reads served by replicas"),
    ("near_cache.hits", "near_cache_hits", "{read}", "reads served by the near cache"),
    ("near_cache.misses", "near_cache_misses", "{read}", "reads the near cache passed on"),
    ("near_cache.invalidations", "near_cache_invalidations", "{key}", "keys nodes invalidated"),
    ("near_cache.flushes", "near_cache_flushes", "{flush}", "near cache node partitions dropped"),
    ("get_or_set.loads", "loader_calls", "{call}", "get_or_set loader calls"),
    ("get_or_set.early_refreshes", "early_refreshes", "{call}", "XFetch early refreshes"),
    ("get_or_set.waits", "single_flight_waits", "{call}", "callers that joined a running load"),
)


class Instrumentation:
    """The instruments registered for one client; :meth:`close` makes them report nothing."""

    def __init__(self, stats: ClientStats, attributes: Mapping[str, str]) -> None:
        self._stats: ClientStats | None = stats
        self._attributes = dict(attributes)

    def close(self) -> None:
        """Stop reporting this client (its instruments then observe nothing)."""
        self._stats = None

    def _with(self, **extra: str) -> dict[str, str]:
        return {**self._attributes, **extra}

    def _scalar(self, attribute: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            stats = self._stats
            if stats is None:
                return []
            return [Observation(getattr(stats, attribute), self._attributes)]

        return observe

    def _operations(self, options: CallbackOptions) -> Iterable[Observation]:
        stats = self._stats
        if stats is None:
            return []
        return [
            Observation(count, self._with(operation=op))
            for op, count in list(stats.operations.items())
        ]

    def _faults(self, options: CallbackOptions) -> Iterable[Observation]:
        stats = self._stats
        if stats is None:
            return []
        return [
            Observation(count, self._with(operation=op, error=error))
            for (op, error), count in list(stats.faults.items())
        ]

    def _lag(self, attribute: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            stats = self._stats
            value = None if stats is None else getattr(stats, attribute)
            return [] if value is None else [Observation(value, self._attributes)]

        return observe

    def _buckets(self, options: CallbackOptions) -> Iterable[Observation]:
        stats = self._stats
        if stats is None:
            return []
        out = []
        for op, histogram in list(stats.latency.items()):
            bounds = [*map(repr, histogram.bounds), "+Inf"]
            for bound, count in zip(bounds, histogram.cumulative(), strict=True):
                out.append(Observation(count, self._with(operation=op, le=bound)))
        return out

    def _latency(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            stats = self._stats
            if stats is None:
                return []
            return [
                Observation(getattr(histogram, field), self._with(operation=op))
                for op, histogram in list(stats.latency.items())
            ]

        return observe


def instrument(
    client: Any,
    *,
    meter_provider: MeterProvider | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Instrumentation:
    """Register observable instruments reading ``client.stats`` (a Client, AsyncClient or stats).

    ``attributes`` are added to every observation, e.g. to tell several
    clients of one process apart. Uses the global meter provider unless one
    is given.
    """
    stats = client if isinstance(client, ClientStats) else getattr(client, "stats", None)
    if not isinstance(stats, ClientStats):
        raise TypeError("instrument() takes a Client, an AsyncClient or a ClientStats")
    handle = Instrumentation(stats, attributes or {})
    meter = metrics.get_meter("slotcache.client", meter_provider=meter_provider)
    meter.create_observable_counter(
        PREFIX + "operations",
        callbacks=[handle._operations],
        unit="{operation}",
        description="calls completed, by operation",
    )
    meter.create_observable_counter(
        PREFIX + "faults",
        callbacks=[handle._faults],
        unit="{operation}",
        description="calls that raised, by operation and exception class",
    )
    for name, attribute, unit, description in _COUNTERS:
        meter.create_observable_counter(
            PREFIX + name,
            callbacks=[handle._scalar(attribute)],
            unit=unit,
            description=description,
        )
    meter.create_observable_gauge(
        PREFIX + "replica.lag",
        callbacks=[handle._lag("replica_lag_ms")],
        unit="ms",
        description="replication lag the last replica read reported",
    )
    meter.create_observable_gauge(
        PREFIX + "replica.lag_operations",
        callbacks=[handle._lag("replica_lag_ops")],
        unit="{operation}",
        description="operations the replica of the last replica read was behind",
    )
    meter.create_observable_counter(
        PREFIX + "operation.duration.bucket",
        callbacks=[handle._buckets],
        unit="{operation}",
        description="calls that took at most `le` seconds (cumulative, Prometheus-style)",
    )
    meter.create_observable_counter(
        PREFIX + "operation.duration.sum",
        callbacks=[handle._latency("sum")],
        unit="s",
        description="total seconds spent in calls",
    )
    meter.create_observable_counter(
        PREFIX + "operation.duration.count",
        callbacks=[handle._latency("count")],
        unit="{operation}",
        description="calls timed",
    )
    return handle
