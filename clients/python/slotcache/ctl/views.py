"""What ``nodes`` and ``slots`` show, as plain data built from one node's ClusterState.

Pure functions only: the JSON a script gets and the rows a person sees are
derived here from the same dictionaries, so the two never disagree, and
tests can feed hand-made replies without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from slotcache.contract import SLOT_COUNT
from slotcache.ctl.cluster_ops import CreatedNode
from slotcache.v1 import admin_pb2, cache_pb2

SHORT_ID = 8
# Beyond this many ranges a table cell says "+N more" instead of growing without bound.
RANGES_SHOWN = 4

Run = tuple[int, int, str | None]
"""An inclusive slot range and its owner's node id (None: unassigned)."""


def short_id(node_id: str) -> str:
    """The prefix people read in tables; JSON always has the full 40 hex digits."""
    return node_id[:SHORT_ID] if node_id else "-"


_ROLE_NAMES = {cache_pb2.ROLE_REPLICA: "replica", cache_pb2.ROLE_PROXY: "proxy"}


def role_name(info: cache_pb2.NodeInfo) -> str:
    """``primary``, ``replica`` or ``proxy``."""
    return _ROLE_NAMES.get(info.role, "primary")


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


def some_of(items: Sequence[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: a list that stays one readable line however long it gets."""
    listed = ", ".join(items[:shown])
    return listed if len(items) <= shown else f"{listed} and {len(items) - shown} more"


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


def node_entry(peer: admin_pb2.PeerState, addresses: Mapping[str, str]) -> dict[str, Any]:
    """Everything known about one node, JSON-ready; ``addresses`` maps ids to client addresses."""
    info = peer.node
    ranges = ranges_of(info)
    return {
        "id": info.id,
        "address": info.address,
        "bus_address": peer.bus_address,
        "role": role_name(info),
        "primary_id": info.primary_id or None,
        "primary_address": addresses.get(info.primary_id) if info.primary_id else None,
        "flags": list(peer.flags),
        "config_epoch": info.config_epoch,
        "failing": info.failing,
        "slots": [[s, e] for s, e in ranges],
        "slot_count": count(ranges),
        "ping_sent_ms_ago": peer.ping_sent_ms_ago,
        "pong_received_ms_ago": peer.pong_received_ms_ago,
        "failure_reports": peer.failure_reports,
    }


def ordered(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Primaries by their first slot, each followed by its replicas; unplaced replicas last.

    Reading down the table then shows each shard as a group, as the slots
    and their copies belong together.
    """

    def first_slot(entry: dict[str, Any]) -> tuple[int, str]:
        return (entry["slots"][0][0] if entry["slots"] else SLOT_COUNT, entry["address"])

    primaries = sorted((e for e in entries if e["role"] == "primary"), key=first_slot)
    replicas = sorted((e for e in entries if e["role"] != "primary"), key=lambda e: e["address"])
    result: list[dict[str, Any]] = []
    for primary in primaries:
        result.append(primary)
        result.extend(r for r in replicas if r["primary_id"] == primary["id"])
    placed = {id(e) for e in result}
    return result + [r for r in replicas if id(r) not in placed]


def nodes_view(address: str, state: admin_pb2.ClusterStateReply) -> dict[str, Any]:
    """The ``nodes`` command's data: the responder's summary and its nodes, by shard."""
    addresses = {p.node.id: p.node.address for p in state.peers}
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
        "nodes": ordered([node_entry(p, addresses) for p in state.peers]),
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


def created_entries(created: Sequence[CreatedNode]) -> list[dict[str, Any]]:
    """What ``create`` and ``up`` report per node: its id, role, primary and slots, JSON-ready."""
    addresses = {n.id: n.address for n in created}
    return [
        {
            "address": n.address,
            "id": n.id,
            "role": n.role,
            "primary_id": n.primary_id,
            "primary_address": addresses.get(n.primary_id) if n.primary_id else None,
            "slots": [list(n.slots)] if n.slots else [],
            "slot_count": count([n.slots]) if n.slots else 0,
        }
        for n in created
    ]


def role_cell(entry: Mapping[str, Any]) -> str:
    """``primary``, or ``replica of ADDRESS`` for a node whose primary's address is known."""
    if entry.get("primary_address"):
        return f"replica of {entry['primary_address']}"
    return str(entry["role"])


CREATED_COLUMNS = ("address", "id", "role", "slots", "count")


def created_rows(entries: Sequence[Mapping[str, Any]]) -> list[list[object]]:
    """Table rows for ``create``, in :data:`CREATED_COLUMNS` order."""
    return [
        [
            e["address"],
            short_id(e["id"]),
            role_cell(e),
            format_ranges([(s, end) for s, end in e["slots"]]),
            e["slot_count"],
        ]
        for e in entries
    ]
