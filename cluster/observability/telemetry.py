"""A node's telemetry, built from its configuration in one place.

The recorder is handed to the Cache servicer; the exporters, the access
log's writer and the tracer start with the node and stop with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from importlib.metadata import version
from typing import TYPE_CHECKING

from slotcache.latency import info_key

from ..config import ServerConfig
from .access_log import AccessLog, AccessLogConfig
from .calls import CallRecorder
from .export import ExportConfig, MetricsExport, SnapshotSource
from .hotkeys import HotKeys
from .latency import merged
from .node_metrics import INSTRUMENTS, snapshot
from .procstats import established_connections
from .slowlog import SlowLog
from .tracing import Tracer

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)


class Telemetry:
    """The recorder on the request path and everything that reads it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        access = None
        if config.access_log:
            access = AccessLog(
                AccessLogConfig(
                    config.access_log,
                    config.access_log_sample,
                    config.access_log_keys,
                    config.access_log_max_bytes,
                    config.access_log_keep,
                    config.access_log_queue,
                )
            )
        hotkeys = (
            HotKeys(config.hotkeys_capacity, config.hotkeys_sample)
            if config.hotkeys_sample
            else None
        )
        slowlog = SlowLog(config.slowlog_slower_than_us, config.slowlog_max_len)
        self.recorder = CallRecorder(slowlog, access, hotkeys)
        self.tracer = (
            Tracer(config.otlp_endpoint, self._resource()) if config.otlp_endpoint else None
        )
        self.metrics: MetricsExport | None = None

    def _resource(self, port: int | None = None) -> dict[str, str]:
        cfg = self.config
        return {
            "service.name": "slotcache",
            "service.version": version("slotcache"),
            "service.instance.id": f"{cfg.public_host}:{cfg.client_port if port is None else port}",
        }

    def start(self, node: Node) -> None:
        """Start the access-log writer and the metric exporters."""
        if self.recorder.access is not None:
            self.recorder.access.start()
        cfg = self.config
        port = cfg.metrics_listen_port
        if not port and not cfg.otlp_endpoint:
            return
        self.metrics = MetricsExport(
            ExportConfig(cfg.host, port, cfg.otlp_endpoint),
            self._resource(node.port),
            INSTRUMENTS,
        )
        source = SnapshotSource(asyncio.get_running_loop(), lambda: snapshot(node))
        try:
            self.metrics.start(source)
        except OSError as exc:
            if cfg.metrics_port:  # asked for explicitly: the node must not run without it
                raise
            # The automatic port is a convenience; a clash must not stop the node.
            log.warning("metrics endpoint not started on port %d: %s", port, exc)
            self.metrics = None
            return
        if self.metrics.port:
            log.info("metrics on http://%s:%d/metrics", cfg.host, self.metrics.port)

    def stop(self) -> None:
        """Stop exporting and flush the access log."""
        if self.metrics is not None:
            self.metrics.stop()
        if self.tracer is not None:
            self.tracer.stop()
        if self.recorder.access is not None:
            self.recorder.access.stop()

    def stats(self, node: Node) -> dict[str, int]:
        """Figures for the Info RPC (what ``clusterctl top`` reads)."""
        rec = self.recorder
        port = node.port
        out = {
            "net.bytes_in": rec.bytes_in,
            "net.bytes_out": rec.bytes_out,
            "clients.connected": established_connections(port),
            "streams.pipeline": rec.streams_open,
            "slowlog.total": rec.slowlog.total,
            "metrics.port": self.metrics.port if self.metrics is not None else 0,
            "process.cpu_ms": int(sum(os.times()[:2]) * 1000),
        }
        for i, n in enumerate(merged(list(rec.latency.values()))):
            out[info_key(i)] = n
        if node.migrations is not None:
            active = [r for r in node.migrations.records.values() if r.active]
            out["migrations.active"] = len(active)
            out["migrations.keys"] = sum(r.keys for r in active)
        if rec.access is not None:
            out["access_log.written"] = rec.access.written
            out["access_log.dropped"] = rec.access.dropped
            out["access_log.failed"] = rec.access.write_errors
        return out
