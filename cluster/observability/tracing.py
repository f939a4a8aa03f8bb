"""W3C trace context: carried through forwarding always, spans only for sampled calls.

A call without ``traceparent`` costs nothing beyond the metadata scan the
routing options already do. With one, the context is passed to the owner
when the call is forwarded, so a trace crosses the cluster. Spans are
recorded only when the caller sampled the call (the parent-based rule) and
an OTLP endpoint is configured to send them to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

TRACE_FLAGS_SAMPLED = 0x01
_TRACEPARENT_LEN = 55


def sampled(traceparent: str) -> bool:
    """Whether a ``traceparent`` (version 00) asks for the call to be recorded."""
    if len(traceparent) != _TRACEPARENT_LEN:
        return False
    try:
        return bool(int(traceparent[-2:], 16) & TRACE_FLAGS_SAMPLED)
    except ValueError:
        return False


class Tracer:
    """Records server spans for sampled calls and exports them over OTLP/gRPC."""

    def __init__(self, endpoint: str, resource: dict[str, str], exporter: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        # Parent-based: record exactly what the caller sampled; a root is never sampled here.
        self._provider = TracerProvider(
            sampler=ParentBased(ALWAYS_OFF), resource=Resource.create(resource)
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("slotcache.server")
        self._propagator = TraceContextTextMapPropagator()

    @contextlib.contextmanager
    def span(self, method: str, traceparent: str) -> Iterator[str]:
        """Record a server span under ``traceparent``; yield the context to forward with."""
        from opentelemetry.trace import SpanKind

        parent = self._propagator.extract({"traceparent": traceparent})
        with self._tracer.start_as_current_span(
            f"slotcache.v1.Cache/{method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        ):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield carrier.get("traceparent", traceparent)

    def stop(self) -> None:
        """Flush and stop exporting."""
        self._provider.shutdown()
