"""What ``nodes`` and ``slots`` show, as plain data built from one node's ClusterState.

Pure functions only: the JSON a script gets and the rows a person sees are
derived here from the same dictionaries, so the two never disagree, and
tests can feed hand-made replies without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from slotcache.ctl.cluster_ops import SLOT_COUNT
from slotcache.v1 import admin_pb2, cache_pb2

SHORT_ID = 8
# Beyond this many ranges a table cell says "+N more" instead of growing without bound.
RANGES_SHOWN = 4

Run = tuple[int, int, str | None]
"""An inclusive slot range and its owner's node id (None: unassigned)."""


def short_id(node_id: str) -> str:
    """The prefix people read in tables; JSON always has the full 40 hex digits."""
    return node_id[:SHORT_ID] if node_id else "-"


def role_name(info: cache_pb2.NodeInfo) -> str:
    """``primary`` or ``replica``."""
    return "replica" if info.role == cache_pb2.ROLE_REPLICA else "primary"


def ranges_of(info: cache_pb2.NodeInfo) -> list[tuple[int, int]]:
    """A node's slot ranges as sorted ``(start, end)`` pairs."""
    return sorted((r.start, r.end) for r in info.slots)


def count(ranges: Iterable[tuple[int, int]]) -> int:
    """How many slots inclusive ranges hold."""
    return sum(end - start + 1 for start, end in ranges)


def format_ranges(ranges: Sequence[tuple[int, int]], limit: int = RANGES_SHOWN) -> str:
    """``0-5460, 10000`` style text, shortened after ``limit`` ranges."""
    if not ranges:
        return "-"
    parts = [str(s) if s == e else f"{s}-{e}" for s, e in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"+{len(ranges) - limit} more")
    return ", ".join(parts)


def owner_table(state: admin_pb2.ClusterStateReply) -> list[str | None]:
    """The owner's id of every slot in this node's view (None where no node claims it)."""
    owners: list[str | None] = [None] * SLOT_COUNT
    for peer in state.peers:
        for start, end in ranges_of(peer.node):
            for s in range(max(start, 0), min(end, SLOT_COUNT - 1) + 1):
                owners[s] = peer.node.id
    return owners


def runs(owners: Sequence[str | None]) -> list[Run]:
    """Collapse per-slot owners into maximal ranges with one owner each."""
    result: list[Run] = []
    start = 0
    for slot in range(1, len(owners) + 1):
        if slot == len(owners) or owners[slot] != owners[start]:
            result.append((start, slot - 1, owners[start]))
            start = slot
    return result


def node_entry(peer: admin_pb2.PeerState) -> dict[str, Any]:
    """Everything known about one node, JSON-ready."""
    info = peer.node
    ranges = ranges_of(info)
    return {
        "id": info.id,
        "address": info.address,
        "bus_address": peer.bus_address,
        "role": role_name(info),
        "primary_id": info.primary_id or None,
        "flags": list(peer.flags),
        "config_epoch": info.config_epoch,
        "failing": info.failing,
        "slots": [[s, e] for s, e in ranges],
        "slot_count": count(ranges),
        "ping_sent_ms_ago": peer.ping_sent_ms_ago,
        "pong_received_ms_ago": peer.pong_received_ms_ago,
        "failure_reports": peer.failure_reports,
    }


def _order(entry: dict[str, Any]) -> tuple[int, int, str]:
    first_slot = entry["slots"][0][0] if entry["slots"] else SLOT_COUNT
    return (entry["role"] != "primary", first_slot, entry["address"])


def nodes_view(address: str, state: admin_pb2.ClusterStateReply) -> dict[str, Any]:
    """The ``nodes`` command's data: the responder's summary and its nodes, primaries by slot."""
    return {
        "responder": address,
        "myself": state.myself,
        "cluster_enabled": state.cluster_enabled,
        "cluster_ok": state.cluster_ok,
        "current_epoch": state.current_epoch,
        "known_nodes": state.known_nodes,
        "size": state.size,
        "slots_assigned": state.slots_assigned,
        "node_timeout_ms": state.node_timeout_ms,
        "nodes": sorted((node_entry(p) for p in state.peers), key=_order),
    }


NODE_COLUMNS = (
    "id",
    "address",
    "role",
    "flags",
    "epoch",
    "slots",
    "count",
    "ping sent ago",
    "pong ago",
    "fail reports",
)


def _age(ms: int) -> str:
    return f"{ms}ms" if ms else "-"


def node_rows(view: dict[str, Any]) -> list[list[object]]:
    """Table rows for ``nodes``, in :data:`NODE_COLUMNS` order."""
    rows: list[list[object]] = []
    for n in view["nodes"]:
        role = n["role"]
        if n["primary_id"]:
            role = f"{role} of {short_id(n['primary_id'])}"
        rows.append(
            [
                short_id(n["id"]),
                n["address"],
                role,
                ",".join(n["flags"]) or "-",
                n["config_epoch"],
                format_ranges([(s, e) for s, e in n["slots"]]),
                n["slot_count"],
                # A node does not ping itself; its own ages mean nothing.
                "-" if "myself" in n["flags"] else _age(n["ping_sent_ms_ago"]),
                "-" if "myself" in n["flags"] else _age(n["pong_received_ms_ago"]),
                n["failure_reports"],
            ]
        )
    return rows


def summary_line(view: dict[str, Any]) -> str:
    """One line on the cluster as the responder sees it."""
    if not view["cluster_enabled"]:
        return f"{view['responder']} is a standalone node (cluster mode is off)"
    state = "ok" if view["cluster_ok"] else "FAIL"
    return (
        f"view of {view['responder']} (node {short_id(view['myself'])}): cluster {state}, "
        f"current epoch {view['current_epoch']}, {view['known_nodes']} known nodes, "
        f"{view['size']} serving primaries, {view['slots_assigned']}/{SLOT_COUNT} slots assigned, "
        f"node timeout {view['node_timeout_ms']} ms"
    )


def slots_view(address: str, state: admin_pb2.ClusterStateReply) -> dict[str, Any]:
    """The ``slots`` command's data: every slot range and who owns it, unassigned ones too."""
    addresses = {p.node.id: p.node.address for p in state.peers}
    ranges: list[dict[str, Any]] = [
        {
            "start": start,
            "end": end,
            "count": end - start + 1,
            "node_id": owner,
            "address": addresses.get(owner) if owner else None,
        }
        for start, end, owner in runs(owner_table(state))
    ]
    assigned = sum(r["count"] for r in ranges if r["node_id"])
    return {
        "responder": address,
        "cluster_ok": state.cluster_ok,
        "assigned": assigned,
        "unassigned": SLOT_COUNT - assigned,
        "ranges": ranges,
    }


def slot_owner(view: dict[str, Any], slot: int) -> dict[str, Any]:
    """The range entry of ``view`` that contains ``slot``, with the slot added."""
    for entry in view["ranges"]:
        if entry["start"] <= slot <= entry["end"]:
            return {"slot": slot, **entry}
    raise ValueError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")


SLOT_COLUMNS = ("slots", "count", "node", "address")


def slot_rows(ranges: Sequence[dict[str, Any]]) -> list[list[object]]:
    """Table rows for ``slots``, in :data:`SLOT_COLUMNS` order."""
    return [
        [
            format_ranges([(r["start"], r["end"])]),
            r["count"],
            short_id(r["node_id"]) if r["node_id"] else "UNASSIGNED",
            r["address"] or "-",
        ]
        for r in ranges
    ]
