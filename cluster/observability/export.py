"""OpenTelemetry export: observable instruments over a snapshot, read at collection time.

The node's counters live on its event loop. When Prometheus scrapes (on
the exporter's HTTP thread) or the OTLP exporter's period comes (on its
thread), the reader first asks the loop for one :class:`Snapshot` of plain
numbers, then lets the SDK run the observable callbacks over it: every
figure of a scrape comes from the same instant, and no thread reads the
loop's dicts while they change.

OTel observables cannot report a histogram, and the Python SDK has no
``MetricProducer`` yet, so the readers append the latency histograms,
already bucketed on the hot path, to the collected data themselves. Both
standard exporters then encode them as they would their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from .latency import BOUNDS_S
from .metrics_http import serve_metrics

log = logging.getLogger(__name__)

SCOPE = "slotcache.server"
SNAPSHOT_TIMEOUT_S = 2.0
Attributes = Mapping[str, str | int]


@dataclass(frozen=True)
class Instrument:
    """One exported figure: ``kind`` is counter, updown or gauge."""

    name: str
    kind: str
    unit: str
    description: str


@dataclass(frozen=True)
class HistogramSeries:
    """One histogram series: counts per bucket (the last one unbounded) and their sum."""

    attributes: Attributes
    buckets: Sequence[int]
    sum: float


@dataclass(frozen=True)
class HistogramSpec:
    """A histogram and its series in one snapshot."""

    instrument: Instrument
    series: Sequence[HistogramSeries]


@dataclass
class Snapshot:
    """Every figure of one collection, as plain data."""

    values: dict[str, list[tuple[Attributes, float]]] = field(default_factory=dict)
    histograms: list[HistogramSpec] = field(default_factory=list)

    def add(self, name: str, value: float, attributes: Attributes | None = None) -> None:
        """Record one figure of ``name``."""
        self.values.setdefault(name, []).append((attributes or {}, value))


class SnapshotSource:
    """Takes snapshots on the node's event loop for the exporter threads.

    The SDK gives no hook before a collection's callbacks run; it runs them
    in the order the instruments were created, so the first instrument's
    callback takes the snapshot and the others read it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, build: Callable[[], Snapshot]) -> None:
        self._loop = loop
        self._build = build
        self.current = Snapshot()
        self._started_ns = time.time_ns()

    @property
    def started_ns(self) -> int:
        """When the cumulative series started (the node's start)."""
        return self._started_ns

    def refresh(self) -> None:
        """Take a new snapshot on the loop; keep the previous one if the loop is stuck."""
        if _on_loop(self._loop):
            snapshot = self._build()
        else:

            async def build() -> Snapshot:
                return self._build()

            future = asyncio.run_coroutine_threadsafe(build(), self._loop)
            try:
                snapshot = future.result(SNAPSHOT_TIMEOUT_S)
            except Exception:
                future.cancel()
                log.warning(
                    "metrics snapshot failed or timed out; exporting the previous one",
                    exc_info=True,
                )
                return
        self.current = snapshot

    def observe(
        self, name: str, first: bool = False
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The observable callback for ``name``; the ``first`` one refreshes the snapshot."""

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            if first:
                self.refresh()
            return [Observation(v, dict(a)) for a, v in self.current.values.get(name, ())]

        return callback


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def histogram_metrics(snapshot: Snapshot, start_ns: int, now_ns: int) -> list[Metric]:
    """The snapshot's histograms as SDK metrics, cumulative since ``start_ns``."""
    metrics = []
    for spec in snapshot.histograms:
        points = []
        for series in spec.series:
            used = [i for i, n in enumerate(series.buckets) if n]
            low = BOUNDS_S[used[0] - 1] if used and used[0] > 0 else 0.0
            high = BOUNDS_S[used[-1]] if used and used[-1] < len(BOUNDS_S) else math.inf
            points.append(
                HistogramDataPoint(
                    attributes=dict(series.attributes),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    count=sum(series.buckets),
                    sum=series.sum,
                    bucket_counts=list(series.buckets),
                    explicit_bounds=list(BOUNDS_S),
                    # Only buckets are kept: min and max are their edges.
                    min=low,
                    max=high if used else 0.0,
                )
            )
        metrics.append(
            Metric(
                name=spec.instrument.name,
                description=spec.instrument.description,
                unit=spec.instrument.unit,
                data=Histogram(points, AggregationTemporality.CUMULATIVE),
            )
        )
    return metrics


def with_histograms(data: MetricsData, source: SnapshotSource) -> MetricsData:
    """``data`` plus the snapshot's histograms, in their own scope of the first resource."""
    extra = histogram_metrics(source.current, source.started_ns, time.time_ns())
    if not extra or not data.resource_metrics:
        return data
    first, *rest = data.resource_metrics
    scope = ScopeMetrics(InstrumentationScope(SCOPE), extra, "")
    merged = ResourceMetrics(first.resource, [*first.scope_metrics, scope], first.schema_url)
    return MetricsData([merged, *rest])


def register(
    provider: MeterProvider, source: SnapshotSource, instruments: Iterable[Instrument]
) -> None:
    """Create one observable instrument per figure, each reading the current snapshot."""
    meter = provider.get_meter(SCOPE)
    makers = {
        "counter": meter.create_observable_counter,
        "updown": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }
    for i, spec in enumerate(instruments):
        makers[spec.kind](
            spec.name,
            callbacks=[source.observe(spec.name, first=i == 0)],
            unit=spec.unit,
            description=spec.description,
        )


class SnapshotReading(MetricReader):
    """Mixed in before a reader: adds the histograms of the snapshot just observed."""

    source: SnapshotSource

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if metrics_data is not None:
            metrics_data = with_histograms(metrics_data, self.source)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)  # type: ignore[safe-super]


class PrometheusReader(SnapshotReading, PrometheusMetricReader):
    """The standard Prometheus reader over snapshots."""


@dataclass(frozen=True)
class ExportConfig:
    """Where the metrics go."""

    host: str
    metrics_port: int
    otlp_endpoint: str
    otlp_interval_s: float = 15.0


class MetricsExport:
    """The meter provider, the Prometheus endpoint and the optional OTLP push."""

    def __init__(
        self, config: ExportConfig, resource: Mapping[str, str], instruments: Iterable[Instrument]
    ) -> None:
        self.config = config
        self._resource = Resource.create(dict(resource))
        self._instruments = tuple(instruments)
        self._provider: MeterProvider | None = None
        self._http: WSGIServer | None = None
        self.port = 0

    def start(self, source: SnapshotSource) -> None:
        """Start the exporters that are configured (none: nothing runs)."""
        readers: list[MetricReader] = []
        cfg = self.config
        if cfg.metrics_port:
            readers.append(self._prometheus(source))
        if cfg.otlp_endpoint:
            readers.append(self._otlp(source))
        if not readers:
            return
        self._provider = MeterProvider(metric_readers=readers, resource=self._resource)
        register(self._provider, source, self._instruments)

    def _prometheus(self, source: SnapshotSource) -> MetricReader:
        # A registry of its own: nothing else in the process (or a second node in a
        # test) adds series to this endpoint.
        registry = CollectorRegistry(auto_describe=False)
        reader = PrometheusReader(scope_info_enabled=False, registry=registry)
        reader.source = source
        self._http = serve_metrics(self.config.host, self.config.metrics_port, registry)
        self.port = self._http.server_port
        return reader

    def _otlp(self, source: SnapshotSource) -> MetricReader:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        except ImportError as exc:
            raise RuntimeError(
                "--otlp-endpoint needs opentelemetry-exporter-otlp-proto-grpc "
                "(pip install 'slotcache[otlp]')"
            ) from exc

        class OtlpReader(SnapshotReading, PeriodicExportingMetricReader):
            """The standard periodic OTLP reader over snapshots."""

        exporter = OTLPMetricExporter(endpoint=self.config.otlp_endpoint, insecure=True)
        reader = OtlpReader(exporter, export_interval_millis=self.config.otlp_interval_s * 1000)
        reader.source = source
        return reader

    def stop(self) -> None:
        """Stop serving and pushing."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._provider is not None:
            self._provider.shutdown(timeout_millis=1000)
            self._provider = None
