"""``clusterctl check``'s replication rules: who follows whom, and whether the copies keep up.

Two kinds of findings, on purpose:

- **problems** (check exits 1): a view in which a replica follows a node the
  view does not know or that is not a primary, or two views that disagree on
  a node's role or primary. These leave a shard without the copy the operator
  believes it has, and they do not heal by themselves while they persist.
- **warnings** (check still exits 0): a replica still in its full sync, not
  yet connected, or behind, and a primary that counts fewer connected
  replicas than it has. Each happens for a moment after ``create``,
  ``add-node`` or a failover and then heals without help; failing on them
  would make a script that checks right after a failover flap.

Pure functions, as the rest of ``check``.
"""

from __future__ import annotations

from collections.abc import Mapping

from slotcache.ctl.replicas import replicas_of, sync_problem
from slotcache.ctl.roles import is_primary, is_proxy, is_replica
from slotcache.ctl.views import short_id, some_of
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2

# Listing every node whose role differs in a badly split view would bury the first ones.
MAX_ROLES_LISTED = 5


def _role(peer: admin_pb2.PeerState, names: Mapping[str, str]) -> str:
    if is_proxy(peer):
        return "a proxy"
    if not is_replica(peer):
        return "a primary"
    primary = peer.node.primary_id
    return f"a replica of {names.get(primary, short_id(primary))}" if primary else "a replica"


def role_problems(
    label: str, state: admin_pb2.ClusterStateReply, names: Mapping[str, str]
) -> list[str]:
    """Replicas in one view whose primary is missing, unknown, or not a primary."""
    known = {p.node.id: p for p in state.peers}
    problems = []
    for peer in state.peers:
        if not is_replica(peer):
            continue
        who = names.get(peer.node.id, short_id(peer.node.id))
        primary = known.get(peer.node.primary_id)
        if not peer.node.primary_id:
            problems.append(f"{label} sees {who} as a replica of no node")
        elif primary is None:
            problems.append(
                f"{label} sees {who} as a replica of {short_id(peer.node.primary_id)}, "
                "a node it does not know"
            )
        elif not is_primary(primary):
            what = "a proxy" if is_proxy(primary) else "itself a replica"
            problems.append(f"{label} sees {who} as {_role(peer, names)}, which is {what}")
    return problems


def role_differences(
    states: Mapping[str, admin_pb2.ClusterStateReply | Exception], names: Mapping[str, str]
) -> list[str]:
    """One problem per node whose role (or primary) the views do not all agree on.

    Grouped by node rather than by pair of views: when one view lags after
    a failover, that is one node seen two ways, not a problem per other node.
    """
    seen: dict[str, dict[str, list[str]]] = {}
    for address, state in states.items():
        if isinstance(state, admin_pb2.ClusterStateReply):
            for peer in state.peers:
                roles = seen.setdefault(peer.node.id, {})
                roles.setdefault(_role(peer, names), []).append(address)
    differing = [(node_id, roles) for node_id, roles in seen.items() if len(roles) > 1]
    problems = [
        f"the nodes disagree on the role of {names.get(node_id, short_id(node_id))}: "
        + "; ".join(
            f"{role} for {some_of(viewers)}"
            for role, viewers in sorted(roles.items(), key=lambda item: len(item[1]))
        )
        for node_id, roles in differing[:MAX_ROLES_LISTED]
    ]
    if len(differing) > MAX_ROLES_LISTED:
        problems.append(
            f"... and {len(differing) - MAX_ROLES_LISTED} more nodes whose role "
            "the views disagree on"
        )
    return problems


def sync_warnings(
    labels: Mapping[str, str],
    states: Mapping[str, admin_pb2.ClusterStateReply | Exception],
    infos: Mapping[str, admin_pb2.InfoReply | Exception],
) -> list[str]:
    """Replicas that are not in sync, and primaries with fewer connected replicas than they have.

    Each node is judged by its own view and its own counters: a node knows
    best whom it follows and how far it got. A primary is mentioned only when
    its replicas' own warnings do not already explain the gap (a replica whose
    link broke may still believe it is caught up). ``labels`` maps addresses
    to how messages name the nodes; unreachable nodes are problems already.
    """
    answered = {
        address: (state, info)
        for address, state, info in ((a, states.get(a), infos.get(a)) for a in labels)
        if isinstance(state, admin_pb2.ClusterStateReply) and isinstance(info, admin_pb2.InfoReply)
    }
    warnings, lagging = [], set()
    for address, (state, info) in answered.items():
        problem = sync_problem(info.stats) if info.server.get("role") == "replica" else None
        if problem:
            lagging.add(state.myself)
            warnings.append(f"replica {labels[address]} is not in sync: {problem}")
    for address, (state, info) in answered.items():
        if info.server.get("role") == "replica":
            continue
        followers = replicas_of(state, state.myself)
        in_sync = info.stats.get("repl.replicas_in_sync", 0)
        explained = sum(1 for r in followers if r.node.id in lagging)
        if in_sync < len(followers) - explained:
            have = len(followers)
            warnings.append(
                f"primary {labels[address]} has {counted(have, 'replica')} "
                f"but only {in_sync} connected and in sync"
            )
    return warnings
