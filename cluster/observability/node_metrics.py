"""Every metric a node exports, and the snapshot that fills them from the node's state.

Names follow the OpenTelemetry semantic conventions where one exists
(``rpc.server.call.duration``, ``process.cpu.time``); the rest are
``slotcache.*``, mirroring redis_exporter's figures. No attribute ever
holds a key or a client address: the series are bounded by the operation
table, the status codes, the error reasons and the cluster's nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from slotcache.contract import SLOT_COUNT

from ..cluster_runtime import monotonic_ms
from .calls import CallRecorder
from .export import HistogramSeries, HistogramSpec, Instrument, Snapshot
from .procstats import cpu_seconds, rss_bytes

if TYPE_CHECKING:
    from ..node import Node

_Add = Callable[..., None]

CALL_DURATION = Instrument(
    "rpc.server.call.duration",
    "histogram",
    "s",
    "server-side time of each Cache operation (ops inside a Pipeline message: the message's)",
)


def _i(name: str, kind: str, unit: str, description: str) -> Instrument:
    return Instrument(name, kind, unit, description)


INSTRUMENTS: tuple[Instrument, ...] = (
    _i("slotcache.server.errors", "counter", "{call}", "failed operations by code and reason"),
    _i("slotcache.keyspace.hits", "counter", "{lookup}", "reads that found their key"),
    _i("slotcache.keyspace.misses", "counter", "{lookup}", "reads that did not"),
    _i("slotcache.keyspace.keys", "updown", "{key}", "keys held"),
    _i("slotcache.keyspace.keys.expiring", "updown", "{key}", "keys with a TTL"),
    _i("slotcache.keyspace.expired", "counter", "{key}", "keys expired, by way (lazy, active)"),
    _i("slotcache.keyspace.evicted", "counter", "{key}", "keys evicted by maxmemory"),
    _i("slotcache.memory.used", "updown", "By", "memory the keyspace accounts for"),
    _i("slotcache.memory.max", "updown", "By", "maxmemory (0: no limit)"),
    _i("slotcache.sampler.cycles", "counter", "{cycle}", "active expiry cycles run"),
    _i("slotcache.sampler.overruns", "counter", "{cycle}", "cycles that ran out of time"),
    _i("slotcache.sampler.stale_ratio", "gauge", "1", "expired share of the last cycle's sample"),
    _i("slotcache.network.io", "counter", "By", "Cache message bytes, by direction"),
    _i("slotcache.clients.connected", "updown", "{connection}", "TCP connections to the port"),
    _i("slotcache.streams.open", "updown", "{stream}", "open streams, by kind"),
    _i("slotcache.calls.forwarded", "counter", "{call}", "calls relayed to the owner"),
    _i("slotcache.calls.redirected", "counter", "{call}", "calls answered with MOVED"),
    _i("slotcache.calls.fanned_out", "counter", "{call}", "multi-key calls split across owners"),
    _i("slotcache.replication.offset", "updown", "{op}", "this node's replication offset"),
    _i("slotcache.replication.replica.lag", "updown", "{op}", "per replica: ops not yet acked"),
    _i("slotcache.replication.lag", "gauge", "ms", "on a replica: how far behind its primary"),
    _i("slotcache.replication.link.up", "updown", "1", "on a replica: 1 when linked and synced"),
    _i("slotcache.replication.syncs", "counter", "{sync}", "syncs by kind and side"),
    _i("slotcache.migrations.active", "updown", "{migration}", "slot migrations in flight"),
    _i("slotcache.migrations.keys", "updown", "{key}", "keys moved by migrations in flight"),
    _i("slotcache.cluster.state", "updown", "1", "1 when the cluster is ok in this node's view"),
    _i("slotcache.cluster.slots", "updown", "{slot}", "slots by owner state (ok, pfail, fail)"),
    _i("slotcache.cluster.slots.assigned", "updown", "{slot}", "slots with an owner"),
    _i("slotcache.cluster.known_nodes", "updown", "{node}", "nodes this node knows"),
    _i("slotcache.cluster.nodes.failing", "updown", "{node}", "known nodes by state (pfail, fail)"),
    _i("slotcache.cluster.current_epoch", "updown", "1", "the cluster's current epoch"),
    _i("slotcache.cluster.failovers", "counter", "{failover}", "times this node became primary"),
    _i("slotcache.gossip.messages", "counter", "{message}", "bus messages, by direction"),
    _i("slotcache.gossip.io", "counter", "By", "bus message bytes, by direction"),
    _i(
        "slotcache.cluster.calls.refused",
        "counter",
        "{call}",
        "node-to-node calls and answers refused as not a cluster member's, by reason",
    ),
    _i("process.cpu.time", "counter", "s", "CPU seconds, by mode (user, system)"),
    _i("process.memory.usage", "updown", "By", "resident memory"),
    _i("slotcache.eventloop.lag", "gauge", "s", "how late the event loop woke, last period"),
    _i("slotcache.eventloop.lag.max", "gauge", "s", "the worst event-loop lag since start"),
    _i("slotcache.access_log.entries", "counter", "{entry}", "access-log entries by outcome"),
    _i("slotcache.slowlog.entries", "counter", "{entry}", "operations that entered the slow log"),
)


def call_histograms(recorder: CallRecorder) -> HistogramSpec:
    """The latency series of every (method, status) seen so far."""
    sums = recorder.latency_sum_ns
    series = [
        HistogramSeries(
            {
                "rpc.method": method,
                "rpc.response.status_code": status,
                "network.protocol.name": protocol,
            },
            list(counts),
            sums[(method, status, protocol)] / 1e9,
        )
        for (method, status, protocol), counts in list(recorder.latency.items())
    ]
    return HistogramSpec(CALL_DURATION, series)


def snapshot(node: Node) -> Snapshot:
    """Read every figure of ``node`` (on its event loop)."""
    snap = Snapshot()
    add = snap.add
    stats = node.stats()
    rec = node.recorder
    snap.histograms.append(call_histograms(rec))
    for (method, status, reason, protocol), n in list(rec.errors.items()):
        attrs = {
            "rpc.method": method,
            "rpc.response.status_code": status,
            "network.protocol.name": protocol,
        }
        add("slotcache.server.errors", n, {**attrs, "error.type": reason or status})
    _keyspace(add, stats)
    add("slotcache.network.io", rec.bytes_in, {"network.io.direction": "receive"})
    add("slotcache.network.io", rec.bytes_out, {"network.io.direction": "transmit"})
    # Read once per snapshot, in stats(): the kernel lists every TCP socket of the host for it.
    add("slotcache.clients.connected", stats["clients.connected"])
    add("slotcache.streams.open", rec.streams_open, {"slotcache.stream": "pipeline"})
    add(
        "slotcache.streams.open",
        stats.get("tracking.subscribers", 0),
        {"slotcache.stream": "subscribe"},
    )
    forwarder = node.forwarder
    add("slotcache.calls.forwarded", forwarder.forwarded_calls, {"slotcache.call": "unary"})
    add("slotcache.calls.forwarded", forwarder.forwarded_batches, {"slotcache.call": "pipeline"})
    add("slotcache.calls.redirected", rec.redirected)
    add("slotcache.calls.fanned_out", rec.fanned_out)
    _replication(add, node, stats)
    _cluster(add, node)
    user, system = cpu_seconds()
    add("process.cpu.time", user, {"cpu.mode": "user"})
    add("process.cpu.time", system, {"cpu.mode": "system"})
    add("process.memory.usage", rss_bytes())
    add("slotcache.eventloop.lag", node.loop_lag_ms / 1000)
    add("slotcache.eventloop.lag.max", node.loop_lag_max_ms / 1000)
    access = rec.access
    if access is not None:
        for outcome, n in (
            ("written", access.written),
            ("dropped", access.dropped),
            ("failed", access.write_errors),
        ):
            add("slotcache.access_log.entries", n, {"outcome": outcome})
    add("slotcache.slowlog.entries", rec.slowlog.total)
    return snap


def _keyspace(add: _Add, stats: Mapping[str, int]) -> None:
    for name, key in (
        ("slotcache.keyspace.hits", "hits"),
        ("slotcache.keyspace.misses", "misses"),
        ("slotcache.keyspace.keys", "keys"),
        ("slotcache.keyspace.keys.expiring", "keys.with_ttl"),
        ("slotcache.keyspace.evicted", "evicted"),
        ("slotcache.memory.used", "memory.used"),
        ("slotcache.memory.max", "memory.max"),
        ("slotcache.sampler.cycles", "sampler.cycles"),
        ("slotcache.sampler.overruns", "sampler.overruns"),
    ):
        add(name, stats[key])
    add("slotcache.keyspace.expired", stats["expired.lazy"], {"slotcache.expiry": "lazy"})
    add("slotcache.keyspace.expired", stats["expired.active"], {"slotcache.expiry": "active"})
    add("slotcache.sampler.stale_ratio", stats.get("sampler.last_stale_permille", 0) / 1000)


def _replication(add: _Add, node: Node, stats: Mapping[str, int]) -> None:
    replication = node.replication
    if replication is None:
        return
    add("slotcache.replication.offset", replication.offset)
    primary, replica = replication.primary, replication.replica
    if primary is not None:
        for link in list(primary.links.values()):
            lag = max(replication.offset - link.acked, 0)
            add(
                "slotcache.replication.replica.lag",
                lag,
                {"slotcache.replica": link.replica_id.hex()},
            )
        add("slotcache.replication.syncs", primary.full_syncs, {"kind": "full", "side": "served"})
        add(
            "slotcache.replication.syncs",
            primary.partial_syncs,
            {"kind": "partial", "side": "served"},
        )
    if replica is not None:
        add("slotcache.replication.lag", stats.get("repl.lag_ms", 0))
        add("slotcache.replication.link.up", 0 if replica.syncing else 1)
        add("slotcache.replication.syncs", replica.full_syncs, {"kind": "full", "side": "received"})
    if "migrations.active" in stats:
        add("slotcache.migrations.active", stats["migrations.active"])
        add("slotcache.migrations.keys", stats["migrations.keys"])


def _cluster(add: _Add, node: Node) -> None:
    state = node.ownership.cluster_state(monotonic_ms(), node.runtime is not None)
    add("slotcache.cluster.state", 1 if state.cluster_ok else 0)
    add("slotcache.cluster.slots.assigned", state.slots_assigned)
    add("slotcache.cluster.known_nodes", state.known_nodes)
    add("slotcache.cluster.current_epoch", state.current_epoch)
    slots = {"ok": 0, "pfail": 0, "fail": 0}
    nodes = {"pfail": 0, "fail": 0}
    for peer in state.peers:
        flag = "fail" if "fail" in peer.flags else "pfail" if "pfail" in peer.flags else "ok"
        if flag != "ok":
            nodes[flag] += 1
        slots[flag] += sum(r.end - r.start + 1 for r in peer.node.slots)
    for flag, n in slots.items():
        add("slotcache.cluster.slots", min(n, SLOT_COUNT), {"state": flag})
    for flag, n in nodes.items():
        add("slotcache.cluster.nodes.failing", n, {"state": flag})
    add("slotcache.cluster.failovers", node.promotions)
    for reason, n in node.node_auth.refused.items():
        add("slotcache.cluster.calls.refused", n, {"reason": reason})
    runtime = node.runtime
    if runtime is not None:
        traffic = runtime.bus.traffic
        add("slotcache.gossip.messages", traffic.sent_messages, {"direction": "transmit"})
        add("slotcache.gossip.io", traffic.sent_bytes, {"direction": "transmit"})
        add("slotcache.gossip.messages", traffic.received_messages, {"direction": "receive"})
        add("slotcache.gossip.io", traffic.received_bytes, {"direction": "receive"})
