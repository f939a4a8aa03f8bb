"""CLUSTER SLOTS, SHARDS, NODES and INFO, built from a plain view of the membership (pure).

Every endpoint here is a node's RESP port, not its gRPC port: these replies
are what cluster-aware Redis clients build their slot map from. A primary
that serves no RESP (started without ``--resp-port``) is shown at the
answering node's endpoint: this node forwards what it cannot redirect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slotcache.contract import SLOT_COUNT


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node as the CLUSTER commands show it."""

    id: str
    host: str
    resp_port: int
    bus_port: int
    primary: bool
    primary_id: str
    pfail: bool
    fail: bool
    config_epoch: int
    ranges: tuple[tuple[int, int], ...]
    myself: bool
    repl_offset: int = 0
    # A proxy (the proxy tier): neither master nor replica, never in SLOTS or SHARDS.
    proxy: bool = False


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The membership as the CLUSTER commands need it."""

    nodes: tuple[NodeRow, ...]
    ok: bool
    current_epoch: int
    enabled: bool

    @property
    def me(self) -> NodeRow:
        """The answering node."""
        return next(n for n in self.nodes if n.myself)

    def endpoint(self, node: NodeRow) -> tuple[str, int]:
        """Where a client reaches ``node`` over RESP (this node when it serves none)."""
        if node.resp_port:
            return node.host, node.resp_port
        me = self.me
        return me.host, me.resp_port

    def replicas_of(self, node: NodeRow) -> list[NodeRow]:
        """The replicas of ``node`` that serve RESP and are not failed."""
        return [
            n
            for n in self.nodes
            if not n.primary
            and not n.proxy
            and n.primary_id == node.id
            and n.resp_port
            and not n.fail
        ]


def slots_reply(view: ClusterView) -> list[Any]:
    """CLUSTER SLOTS: each range with its primary, then its replicas."""
    out: list[Any] = []
    for node in view.nodes:
        if not node.primary or node.proxy:
            continue
        entries = [[*view.endpoint(node), node.id]]
        entries += [[r.host, r.resp_port, r.id] for r in view.replicas_of(node)]
        for start, end in node.ranges:
            out.append([start, end, *entries])
    out.sort(key=lambda entry: entry[0])
    return out


def shards_reply(view: ClusterView) -> list[Any]:
    """CLUSTER SHARDS (Redis 7): each primary's slots and nodes."""
    shards: list[Any] = []
    for node in view.nodes:
        if not node.primary or node.proxy or not node.ranges:
            continue
        members = [node, *view.replicas_of(node)]
        shards.append(
            {
                "slots": [bound for r in node.ranges for bound in r],
                "nodes": [_shard_node(view, m) for m in members],
            }
        )
    return shards


def _shard_node(view: ClusterView, node: NodeRow) -> dict[str, Any]:
    host, port = view.endpoint(node)
    return {
        "id": node.id,
        "port": port,
        "ip": host,
        "endpoint": host,
        "role": "master" if node.primary else "replica",
        "replication-offset": node.repl_offset,
        "health": "fail" if node.fail else "online",
    }


def nodes_reply(view: ClusterView) -> str:
    """CLUSTER NODES: one line per node, in Redis's format."""
    lines = []
    for node in view.nodes:
        host, port = view.endpoint(node)
        flags = []
        if node.myself:
            flags.append("myself")
        flags.append("proxy" if node.proxy else "master" if node.primary else "slave")
        if node.fail:
            flags.append("fail")
        elif node.pfail:
            flags.append("fail?")
        slots = " ".join(f"{s}-{e}" if s != e else str(s) for s, e in node.ranges)
        line = (
            f"{node.id} {host}:{port}@{node.bus_port} {','.join(flags)} "
            f"{node.primary_id or '-'} 0 0 {node.config_epoch} connected"
        )
        lines.append(f"{line} {slots}" if slots else line)
    return "\n".join(lines) + "\n"


def info_reply(view: ClusterView) -> str:
    """CLUSTER INFO's fields, as Redis names them."""
    assigned = pfail = fail = 0
    for node in view.nodes:
        count = sum(e - s + 1 for s, e in node.ranges) if node.primary else 0
        assigned += count
        pfail += count if node.pfail and not node.fail else 0
        fail += count if node.fail else 0
    size = sum(1 for n in view.nodes if n.primary and n.ranges)
    me = view.me
    fields = {
        "cluster_enabled": 1 if view.enabled else 0,
        "cluster_state": "ok" if view.ok else "fail",
        "cluster_slots_assigned": min(assigned, SLOT_COUNT),
        "cluster_slots_ok": min(assigned - pfail - fail, SLOT_COUNT),
        "cluster_slots_pfail": pfail,
        "cluster_slots_fail": fail,
        "cluster_known_nodes": len(view.nodes),
        "cluster_size": size,
        "cluster_current_epoch": view.current_epoch,
        "cluster_my_epoch": me.config_epoch,
    }
    return "".join(f"{k}:{v}\r\n" for k, v in fields.items())


def by_id(view: ClusterView) -> dict[str, NodeRow]:
    """The view's nodes by id."""
    return {n.id: n for n in view.nodes}


def parse_slot(arg: bytes) -> int | None:
    """A slot number argument, or None when it is not one."""
    if not arg.isdigit():
        return None
    slot = int(arg)
    return slot if slot < SLOT_COUNT else None


def rows(nodes: Sequence[NodeRow]) -> tuple[NodeRow, ...]:
    """Nodes in a stable order: primaries by their first slot, then replicas."""
    return tuple(
        sorted(nodes, key=lambda n: (not n.primary, n.ranges[0][0] if n.ranges else SLOT_COUNT))
    )
