"""Client metrics as plain numbers, and their OpenTelemetry export via observable instruments."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import slotcache
import slotcache.otel
from slotcache._stats import LATENCY_BOUNDS_S, ClientStats, Histogram


def test_histogram_buckets_sum_count_and_quantiles() -> None:
    h = Histogram()
    for seconds in (0.00004, 0.0003, 0.0003, 0.002, 20.0):
        h.observe(seconds)
    assert h.count == 5
    assert h.sum == pytest.approx(20.00264)
    assert len(h.counts) == len(LATENCY_BOUNDS_S) + 1
    assert h.counts[0] == 1  # <= 50 µs
    assert h.counts[LATENCY_BOUNDS_S.index(0.0005)] == 2  # (250 µs, 500 µs]
    assert h.counts[-1] == 1  # above 10 s
    assert h.cumulative()[-1] == 5
    assert h.quantile(0.5) == 0.0005
    assert h.quantile(1.0) == float("inf")
    assert Histogram().quantile(0.5) == 0.0


def test_stats_count_operations_faults_and_flatten() -> None:
    stats = ClientStats()
    stats.record("get", 0.001)
    stats.record("get", 0.002)
    stats.record("set", 0.001)
    stats.fault("set", slotcache.Unavailable("down"))
    stats.pipeline_messages, stats.pipeline_ops = 4, 100
    assert stats.operations == {"get": 2, "set": 1}
    assert stats.faults == {("set", "Unavailable"): 1}
    assert stats.latency["get"].count == 2
    assert stats.ops_per_message == 25
    flat = stats.as_dict()
    assert flat["operations.get"] == 2
    assert flat["faults.set.Unavailable"] == 1
    assert flat["latency.get.sum"] == pytest.approx(0.003)
    assert "replica_lag_ms" not in flat  # no replica read yet
    stats.replica_lag_ms = 12
    assert stats.as_dict()["replica_lag_ms"] == 12


def collect(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = out.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    points.append((dict(point.attributes or {}), point.value))
    return out


def test_otel_hook_reads_the_plain_numbers_at_collection_time() -> None:
    stats = ClientStats()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    handle = slotcache.otel.instrument(stats, meter_provider=provider, attributes={"cache": "t"})

    stats.record("get", 0.0003)
    stats.record("get", 0.004)
    stats.fault("incr", slotcache.Unavailable("x"))
    stats.redirects = 2
    stats.pipeline_messages, stats.pipeline_ops = 3, 90
    stats.replica_lag_ms = 7
    metrics = collect(reader)

    assert metrics["slotcache.client.operations"] == [({"cache": "t", "operation": "get"}, 2)]
    assert metrics["slotcache.client.faults"] == [
        ({"cache": "t", "operation": "incr", "error": "Unavailable"}, 1)
    ]
    assert metrics["slotcache.client.redirects"] == [({"cache": "t"}, 2)]
    assert metrics["slotcache.client.pipeline.operations"] == [({"cache": "t"}, 90)]
    assert metrics["slotcache.client.replica.lag"] == [({"cache": "t"}, 7)]
    buckets = {a["le"]: v for a, v in metrics["slotcache.client.operation.duration.bucket"]}
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 2 and buckets["+Inf"] == 2
    assert metrics["slotcache.client.operation.duration.count"] == [
        ({"cache": "t", "operation": "get"}, 2)
    ]

    # Counting more between collections shows up at the next collection; no OTel call per op.
    stats.record("get", 0.001)
    assert collect(reader)["slotcache.client.operations"][0][1] == 3

    handle.close()
    assert "slotcache.client.operations" not in {
        name for name, points in collect(reader).items() if points
    }
    provider.shutdown()


def test_otel_hook_takes_a_client() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    client = slotcache.Client("127.0.0.1:1")  # no I/O until the first call
    try:
        slotcache.otel.instrument(client, meter_provider=provider)
        client.stats.retries = 5
        assert collect(reader)["slotcache.client.retries"] == [({}, 5)]
    finally:
        client.close()
        provider.shutdown()
    with pytest.raises(TypeError):
        slotcache.otel.instrument(object(), meter_provider=provider)
