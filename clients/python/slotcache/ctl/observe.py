"""What ``top``, ``slowlog`` and ``hotkeys`` show, computed from node replies (no I/O).

``top`` needs rates, so a row is the difference of two Info readings of one
node: operations per second, the hit ratio and the p99 of the operations
served between them (from the latency buckets), next to the node's gauges.
``hotkeys`` adds up each node's estimates per key: a key lives on one
primary, but replicas serving reads see it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from slotcache.latency import from_info, quantile_us
from slotcache.v1 import admin_pb2

TOP_COLUMNS = (
    "address",
    "role",
    "ops/s",
    "hit %",
    "p99",
    "memory",
    "keys",
    "clients",
    "repl lag",
    "migrating",
)


@dataclass(frozen=True)
class Reading:
    """One node's Info, and when it was taken (monotonic seconds)."""

    at: float
    info: admin_pb2.InfoReply


def _ops(stats: Mapping[str, int]) -> int:
    return sum(n for name, n in stats.items() if name.startswith("ops."))


def top_row(address: str, before: Reading | None, now: Reading) -> dict[str, Any]:
    """One node's line: rates between the readings, gauges from the latest one."""
    stats, server = now.info.stats, now.info.server
    row: dict[str, Any] = {
        "address": address,
        "node_id": server.get("node_id", ""),
        "role": server.get("role", ""),
        "ops_per_s": None,
        "hit_ratio": None,
        "p99_us": None,
        "memory_used": stats.get("memory.used", 0),
        "memory_max": stats.get("memory.max", 0),
        "keys": stats.get("keys", 0),
        "clients": stats.get("clients.connected", 0),
        "repl_lag_ms": stats.get("repl.lag_ms"),
        "migrations": stats.get("migrations.active", 0),
        "migration_keys": stats.get("migrations.keys", 0),
    }
    if before is None or now.at <= before.at:
        return row
    old = before.info.stats
    seconds = now.at - before.at
    row["ops_per_s"] = round((_ops(stats) - _ops(old)) / seconds, 1)
    hits = stats.get("hits", 0) - old.get("hits", 0)
    misses = stats.get("misses", 0) - old.get("misses", 0)
    if hits + misses:
        row["hit_ratio"] = round(hits / (hits + misses), 4)
    recent = [a - b for a, b in zip(from_info(stats), from_info(old), strict=True)]
    row["p99_us"] = quantile_us(recent, 0.99)
    return row


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _latency(us: int | None) -> str:
    if us is None:
        return "-"
    return f"≤{us}µs" if us < 1000 else f"≤{us / 1000:g}ms"


def top_cells(row: Mapping[str, Any]) -> list[object]:
    """A row's cells in :data:`TOP_COLUMNS` order, for people."""
    if "error" in row:
        return [row["address"], "unreachable", *["-"] * (len(TOP_COLUMNS) - 2)]
    memory = _size(row["memory_used"])
    if row["memory_max"]:
        memory += f" / {_size(row['memory_max'])}"
    hit = row["hit_ratio"]
    lag = row["repl_lag_ms"]
    return [
        row["address"],
        row["role"],
        "-" if row["ops_per_s"] is None else f"{row['ops_per_s']:,.0f}",
        "-" if hit is None else f"{hit * 100:.1f}",
        _latency(row["p99_us"]),
        memory,
        row["keys"],
        row["clients"],
        "-" if lag is None else f"{lag}ms",
        f"{row['migrations']} ({row['migration_keys']:,} keys)" if row["migrations"] else "-",
    ]


SLOWLOG_COLUMNS = (
    "node",
    "id",
    "time (ms)",
    "latency",
    "op",
    "key",
    "keys",
    "slot",
    "peer",
    "status",
)


def slow_entries(replies: Mapping[str, admin_pb2.SlowLogReply]) -> list[dict[str, Any]]:
    """Every node's slow operations, slowest first."""
    entries: list[dict[str, Any]] = [
        {
            "node": address,
            "id": e.id,
            "time_ms": e.time_ms,
            "latency_us": e.latency_us,
            "op": e.op,
            "key": e.key.decode("utf-8", "backslashreplace"),
            "keys": e.keys,
            "slot": e.slot,
            "peer": e.peer,
            "status": e.status,
        }
        for address, reply in replies.items()
        for e in reply.entries
    ]
    entries.sort(key=lambda e: (-e["latency_us"], e["node"], -e["id"]))
    return entries


def slow_cells(entry: Mapping[str, Any]) -> list[object]:
    """A slow-log row for people."""
    return [
        entry["node"],
        entry["id"],
        entry["time_ms"],
        _latency(entry["latency_us"]).lstrip("≤"),
        entry["op"],
        entry["key"],
        entry["keys"],
        entry["slot"],
        entry["peer"],
        entry["status"],
    ]


HOTKEY_COLUMNS = ("key", "slot", "accesses (est.)", "± error", "nodes")


def merge_hot_keys(
    replies: Mapping[str, admin_pb2.HotKeysReply], count: int
) -> list[dict[str, Any]]:
    """Each key's estimates added up over the nodes that saw it, most accessed first."""
    merged: dict[bytes, dict[str, Any]] = {}
    for address, reply in replies.items():
        for hot in reply.keys:
            entry = merged.setdefault(
                hot.key,
                {
                    "key": hot.key.decode("utf-8", "backslashreplace"),
                    "slot": hot.slot,
                    "count": 0,
                    "error": 0,
                    "nodes": [],
                },
            )
            entry["count"] += hot.count
            entry["error"] += hot.error
            entry["nodes"].append(address)
    ranked = sorted(merged.values(), key=lambda e: (-e["count"], e["key"]))
    return ranked[:count]


def hot_cells(entry: Mapping[str, Any]) -> list[object]:
    """A hot-key row for people."""
    return [entry["key"], entry["slot"], entry["count"], entry["error"], ", ".join(entry["nodes"])]


def node_addresses(state: admin_pb2.ClusterStateReply, fallback: str) -> list[str]:
    """Every node's client address in one node's view (just ``fallback`` when standalone)."""
    addresses = [p.node.address for p in state.peers if p.node.address]
    return sorted(set(addresses)) if state.cluster_enabled and addresses else [fallback]


def sampling_note(replies: Iterable[admin_pb2.HotKeysReply]) -> str:
    """How the estimates were made, for the line under the table."""
    rates = sorted({r.sample for r in replies if r.sample})
    if not rates:
        return "hot-key sampling is off on every node (--hotkeys-sample 0)"
    return f"1 in {'/'.join(map(str, rates))} accesses sampled; counts are scaled estimates"
