"""A sampled W3C trace crosses the cluster: the entry node's span and the owner's, one trace.

A small OTLP collector in the test process receives what the nodes export
(real OTLP/gRPC on loopback); spans are flushed when the nodes stop.
"""

from __future__ import annotations

import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from slotcache.contract import key_slot
from slotcache.ctl.launcher import LOOPBACK
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc
from tests.support.processes import Cluster, ServerFactory

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class _Collector(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    def __init__(self) -> None:
        self.spans: list = []

    def Export(self, request, context):  # both services share the method name
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        return metrics_service_pb2.ExportMetricsServiceResponse()


def test_a_sampled_call_is_traced_through_forwarding(servers: ServerFactory) -> None:
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(collector, server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    server.start()
    try:
        cluster = Cluster.start(servers, 2, 1000, "--otlp-endpoint", f"http://{LOOPBACK}:{port}")
        # A key node 1 owns, sent to node 0: a plain client, so node 0 forwards it.
        key = next(b"k%d" % i for i in range(10_000) if key_slot(b"k%d" % i) >= 8192)
        with grpc.insecure_channel(cluster.addresses[0]) as channel:
            stub = cache_pb2_grpc.CacheStub(channel)
            sampled = (("traceparent", f"00-{TRACE_ID}-{CLIENT_SPAN}-01"),)
            stub.Set(pb.SetRequest(key=key, value=b"v"), metadata=sampled)
            unsampled = (("traceparent", f"00-{'1' * 32}-{CLIENT_SPAN}-00"),)
            stub.Get(pb.GetRequest(key=key), metadata=unsampled)
            stub.Get(pb.GetRequest(key=key))
        for node in cluster.nodes:  # stopping flushes the span exporters
            node.stop()
        deadline = time.monotonic() + 10
        while len(collector.spans) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop(0)
    spans = {s.parent_span_id.hex(): s for s in collector.spans}
    assert len(collector.spans) == 2, collector.spans  # only the sampled call, on each node
    entry = spans[CLIENT_SPAN]
    owner = spans[entry.span_id.hex()]
    assert entry.trace_id.hex() == owner.trace_id.hex() == TRACE_ID
    assert entry.name == owner.name == "slotcache.v1.Cache/Set"
