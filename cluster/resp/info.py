"""INFO in Redis's layout: the same section and field names, from the node's own figures (pure).

Exporters (redis_exporter, Datadog, Telegraf) and dashboards read fields
such as ``keyspace_hits``, ``used_memory`` and ``connected_clients`` by
name; those that have a slotcache counterpart carry it, under the section
Redis puts them in. ``redis_version`` is the Redis version whose commands
and replies the listener follows, which is what clients check it for;
``slotcache_version`` is the server's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REDIS_VERSION = "7.4.0"
DEFAULT_SECTIONS = (
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
)


@dataclass(frozen=True)
class InfoInputs:
    """What INFO reads from the node, gathered on the event loop."""

    server: Mapping[str, str]
    stats: Mapping[str, int]
    resp_port: int
    connected_clients: int
    connections_received: int
    commands_processed: int
    tracking_clients: int
    rss_bytes: int
    cpu: tuple[float, float]
    primary_endpoint: tuple[str, int] | None


def human(n: int) -> str:
    """Bytes as Redis shows them in the ``*_human`` fields."""
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n}B"


def sections(inputs: InfoInputs) -> dict[str, dict[str, Any]]:
    """Every section's fields."""
    server, stats = inputs.server, inputs.stats
    uptime = int(server.get("uptime_s", "0"))
    replica = server.get("role") == "replica"
    used, maxmemory = stats.get("memory.used", 0), stats.get("memory.max", 0)
    replication: dict[str, Any] = {"role": "slave" if replica else "master"}
    if replica and inputs.primary_endpoint is not None:
        host, port = inputs.primary_endpoint
        replication["master_host"] = host
        replication["master_port"] = port
        replication["master_link_status"] = "down" if stats.get("repl.syncing", 0) else "up"
        replication["master_repl_offset"] = stats.get("repl.offset", 0)
    else:
        replication["connected_slaves"] = stats.get("repl.replicas", 0)
        replication["master_repl_offset"] = stats.get("repl.offset", 0)
    keys, expiring = stats.get("keys", 0), stats.get("keys.with_ttl", 0)
    return {
        "server": {
            "redis_version": REDIS_VERSION,
            "slotcache_version": server.get("version", ""),
            "redis_mode": "cluster" if server.get("cluster_enabled") == "yes" else "standalone",
            "arch_bits": 64,
            "process_id": server.get("pid", "0"),
            "run_id": server.get("node_id", ""),
            "tcp_port": inputs.resp_port,
            "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400,
        },
        "clients": {
            "connected_clients": inputs.connected_clients,
            "blocked_clients": 0,
            "tracking_clients": inputs.tracking_clients,
        },
        "memory": {
            "used_memory": used,
            "used_memory_human": human(used),
            "used_memory_rss": inputs.rss_bytes,
            "used_memory_rss_human": human(inputs.rss_bytes),
            "maxmemory": maxmemory,
            "maxmemory_human": human(maxmemory),
            "maxmemory_policy": server.get("maxmemory_policy", "noeviction"),
        },
        "persistence": {
            "loading": 0,
            "rdb_changes_since_last_save": 0,
            "rdb_bgsave_in_progress": 0,
            "rdb_saves": stats.get("snapshot.saves", 0),
            "aof_enabled": 0,
        },
        "stats": {
            "total_connections_received": inputs.connections_received,
            "total_commands_processed": inputs.commands_processed,
            "total_net_input_bytes": stats.get("net.bytes_in", 0),
            "total_net_output_bytes": stats.get("net.bytes_out", 0),
            "rejected_connections": 0,
            "expired_keys": stats.get("expired.lazy", 0) + stats.get("expired.active", 0),
            "evicted_keys": stats.get("evicted", 0),
            "keyspace_hits": stats.get("hits", 0),
            "keyspace_misses": stats.get("misses", 0),
            "tracking_total_keys": stats.get("tracking.keys", 0),
        },
        "replication": replication,
        "cpu": {
            "used_cpu_user": f"{inputs.cpu[0]:.6f}",
            "used_cpu_sys": f"{inputs.cpu[1]:.6f}",
        },
        "cluster": {"cluster_enabled": 1 if server.get("cluster_enabled") == "yes" else 0},
        "keyspace": {"db0": f"keys={keys},expires={expiring},avg_ttl=0"} if keys else {},
    }


def render(all_sections: Mapping[str, Mapping[str, Any]], wanted: Sequence[str]) -> str:
    """The INFO text for the sections asked for (none, ``all`` or ``default``: every one)."""
    names = [w.lower() for w in wanted]
    if not names or any(n in ("all", "everything", "default") for n in names):
        names = list(DEFAULT_SECTIONS)
    blocks = []
    for name in names:
        fields = all_sections.get(name)
        if fields is None:
            continue
        lines = [f"# {name.capitalize()}"] + [f"{k}:{v}" for k, v in fields.items()]
        blocks.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(blocks)
