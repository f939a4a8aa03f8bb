"""Whether the nodes' views of the cluster agree, and what a wait for agreement still waits for.

Pure: it compares ``ClusterState`` replies. Each view is measured against
the newest one the replies hold together, not against one node's view (a
node that has not heard of the last change yet would make the others look
wrong, and the count of agreeing nodes would rise and fall while gossip
spreads): each slot goes to the claim with the highest config epoch, as
the cluster itself decides, and each node's role is what that node says
of itself when it answered (its peers only repeat it). Once nothing
changes any more, the count of nodes that have caught up only grows; it
can drop only when the newest view itself moves on, such as a drained
primary turning into a replica while the others learn of its last slots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from slotcache.contract import SLOT_COUNT
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2

# Lagging nodes named in one progress line; the rest are counted.
MAX_NAMED = 4

# (start, end, config epoch, node id) of one node's slot range, as one view has it.
_Claim = tuple[int, int, int, str]


def slot_map(state: admin_pb2.ClusterStateReply) -> tuple[tuple[str, int, int], ...]:
    """A node's slot ownership as sorted ``(node id, start, end)`` triples."""
    return tuple(sorted((p.node.id, r.start, r.end) for p in state.peers for r in p.node.slots))


def role_map(state: admin_pb2.ClusterStateReply) -> tuple[tuple[str, str], ...]:
    """Whom each node follows in this view, as sorted ``(node id, primary id or "")`` pairs."""
    return tuple(sorted((p.node.id, p.node.primary_id) for p in state.peers))


def _claims(state: admin_pb2.ClusterStateReply) -> list[_Claim]:
    return [
        (r.start, r.end, p.node.config_epoch, p.node.id) for p in state.peers for r in p.node.slots
    ]


def _owners(claims: Sequence[_Claim], bounds: Sequence[int]) -> tuple[str, ...]:
    """The owner of each stretch ``bounds[i]..bounds[i+1]-1``: the claim with the highest epoch."""
    owners = []
    for start in bounds[:-1]:
        covering = [(epoch, node) for s, e, epoch, node in claims if s <= start <= e]
        owners.append(max(covering)[1] if covering else "")
    return tuple(owners)


def _newest_roles(states: Sequence[admin_pb2.ClusterStateReply]) -> dict[str, str]:
    """Each node's primary (or ""), as the node itself says; else as most views say."""
    said: dict[str, Counter[str]] = {}
    for state in states:
        for peer in state.peers:
            said.setdefault(peer.node.id, Counter())[peer.node.primary_id] += 1
    roles = {node: votes.most_common(1)[0][0] for node, votes in said.items()}
    for state in states:
        for peer in state.peers:
            if peer.node.id == state.myself:
                roles[peer.node.id] = peer.node.primary_id
    return roles


def lagging(
    states: Sequence[admin_pb2.ClusterStateReply], expected_nodes: int | None = None
) -> dict[int, str]:
    """Why each view that is not yet the newest, complete and ok is behind, by its index.

    Empty exactly when every view reports the cluster ok, knows
    ``expected_nodes`` nodes (if given), and all views are the same.
    """
    claims = [_claims(s) for s in states]
    bounds = sorted({0, SLOT_COUNT} | {b for cs in claims for s, e, _, _ in cs for b in (s, e + 1)})
    newest_owners = _owners([c for cs in claims for c in cs], bounds)
    newest_roles = _newest_roles(states)
    total = expected_nodes if expected_nodes is not None else len(newest_roles)
    behind: dict[int, str] = {}
    for i, state in enumerate(states):
        roles = {p.node.id: p.node.primary_id for p in state.peers}
        if len(roles) != total:
            behind[i] = f"knows {len(roles)} of {counted(total, 'node')}"
        elif roles.keys() != newest_roles.keys():
            behind[i] = "does not know the same nodes as the others yet"
        elif _owners(claims[i], bounds) != newest_owners:
            behind[i] = "has not learned every slot's owner yet"
        elif roles != newest_roles:
            behind[i] = "has not learned every node's role yet"
        elif not state.cluster_ok:
            behind[i] = "does not report the cluster ok yet"
    return behind


def waiting_text(
    phrase: str, addresses: Sequence[str], behind: Mapping[int, str], total: int
) -> str:
    """``4 of 6 nodes PHRASE; waiting for ADDRESS (why), ...``, naming a few of them."""
    named = [f"{addresses[i]} ({why})" for i, why in sorted(behind.items())[:MAX_NAMED]]
    if len(behind) > MAX_NAMED:
        named.append(f"{len(behind) - MAX_NAMED} more")
    waiting = ", ".join(named)
    return f"{total - len(behind)} of {counted(total, 'node')} {phrase}; waiting for {waiting}"
