"""``clusterctl check``: decide, from every node's own view, whether the cluster is healthy.

The seed node's view is the reference: every node it knows is asked for its
view, and each difference is reported as one readable problem. Replication
is judged too (see :mod:`slotcache.ctl.check_replication` for which findings
are problems and which are warnings). The logic is pure (views in, problems
out) so that disagreements, which a real cluster shows only for a moment,
can be tested deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slotcache.contract import SLOT_COUNT
from slotcache.ctl import check_replication
from slotcache.ctl.replicas import find_node, sync_summary
from slotcache.ctl.views import format_ranges, owner_table, role_name, runs, short_id
from slotcache.v1 import admin_pb2

# Listing every differing range of a badly split view would bury the first, most useful one.
MAX_RANGES_LISTED = 5


def targets(seed: str, state: admin_pb2.ClusterStateReply) -> dict[str, str]:
    """Address → node id of every node to ask: the seed and every node it knows."""
    found = {seed: state.myself}
    for peer in state.peers:
        if peer.node.address and peer.node.id != state.myself:
            found.setdefault(peer.node.address, peer.node.id)
    return found


def find_problems(
    seed: str,
    expected: Mapping[str, str],
    states: Mapping[str, admin_pb2.ClusterStateReply | Exception],
) -> list[str]:
    """Everything wrong, in the order a person should look at it.

    ``expected`` is what :func:`targets` returned; ``states`` holds each
    address's view, or the error that prevented asking for it.
    """
    reference = states[seed]
    assert isinstance(reference, admin_pb2.ClusterStateReply), "the seed must have answered"
    if not reference.cluster_enabled:
        return [f"{seed} is not in cluster mode (start it with --cluster-enabled yes)"]
    names = _names(states)
    ref_owners = owner_table(reference)
    problems: list[str] = []
    for address, node_id in expected.items():
        got = states[address]
        label = f"{address} ({short_id(node_id)})"
        if not isinstance(got, admin_pb2.ClusterStateReply):
            problems.append(f"{label} does not answer: {got}")
            continue
        if got.myself != node_id:
            problems.append(
                f"{address} is node {short_id(got.myself)}, "
                f"but {seed} has {short_id(node_id)} at that address"
            )
        problems.extend(_own_view_problems(label, got, names))
        if address != seed:
            problems.extend(_differences(seed, reference, ref_owners, label, got, names))
    problems.extend(check_replication.role_differences(states, names))
    return problems


def _names(states: Mapping[str, admin_pb2.ClusterStateReply | Exception]) -> dict[str, str]:
    """Node id → ``address (short id)``, from every view we got, for readable messages."""
    names: dict[str, str] = {}
    for state in states.values():
        if isinstance(state, admin_pb2.ClusterStateReply):
            for peer in state.peers:
                names.setdefault(peer.node.id, f"{peer.node.address} ({short_id(peer.node.id)})")
    return names


def _own_view_problems(
    label: str, state: admin_pb2.ClusterStateReply, names: Mapping[str, str]
) -> list[str]:
    problems = []
    if not state.cluster_ok:
        problems.append(f"{label} reports the cluster as down (state FAIL)")
    unassigned = [(s, e) for s, e, owner in runs(owner_table(state)) if owner is None]
    if unassigned:
        missing = sum(e - s + 1 for s, e in unassigned)
        problems.append(
            f"{label} sees {missing} of {SLOT_COUNT} slots without an owner: "
            f"{format_ranges(unassigned, MAX_RANGES_LISTED)}"
        )
    for peer in state.peers:
        bad = [f for f in peer.flags if f in ("pfail", "fail", "noaddr")]
        if bad:
            who = names.get(peer.node.id, short_id(peer.node.id))
            problems.append(f"{label} flags {who} as {','.join(bad)}")
    problems.extend(check_replication.role_problems(label, state, names))
    return problems


def _differences(
    seed: str,
    reference: admin_pb2.ClusterStateReply,
    ref_owners: Sequence[str | None],
    label: str,
    state: admin_pb2.ClusterStateReply,
    names: Mapping[str, str],
) -> list[str]:
    problems = []
    ref_ids = {p.node.id for p in reference.peers}
    ids = {p.node.id for p in state.peers}
    if ids - ref_ids:
        extra = ", ".join(sorted(names.get(i, short_id(i)) for i in ids - ref_ids))
        problems.append(f"{label} knows nodes that {seed} does not: {extra}")
    if ref_ids - ids:
        missing = ", ".join(sorted(names.get(i, short_id(i)) for i in ref_ids - ids))
        problems.append(f"{label} does not know nodes that {seed} knows: {missing}")
    owners = owner_table(state)
    pairs = [(a, b) for a, b in zip(ref_owners, owners, strict=True)]
    differing = [
        (start, end, pairs[start])
        for start, end, _ in runs([f"{a}|{b}" if a != b else None for a, b in pairs])
        if pairs[start][0] != pairs[start][1]
    ]
    for start, end, (ref_owner, owner) in differing[:MAX_RANGES_LISTED]:
        problems.append(
            f"slots {format_ranges([(start, end)])}: {seed} says {_owner(ref_owner)}, "
            f"{label} says {_owner(owner)}"
        )
    if len(differing) > MAX_RANGES_LISTED:
        problems.append(
            f"... and {len(differing) - MAX_RANGES_LISTED} more slot ranges on which "
            f"{label} and {seed} disagree"
        )
    return problems


def _owner(node_id: str | None) -> str:
    return short_id(node_id) if node_id else "unassigned"


def labels(expected: Mapping[str, str]) -> dict[str, str]:
    """Address → ``address (short id)``, as problems and warnings name the nodes to ask."""
    return {address: f"{address} ({short_id(node_id)})" for address, node_id in expected.items()}


def report(
    expected: Mapping[str, str],
    states: Mapping[str, admin_pb2.ClusterStateReply | Exception],
    problems: Sequence[str],
    infos: Mapping[str, admin_pb2.InfoReply | Exception] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``check`` command's data: the verdict, problems, warnings, and each node's answer.

    Warnings do not change the verdict; ``infos`` (each node's Info, when
    asked) adds how its replication is doing.
    """
    nodes = []
    for address, node_id in expected.items():
        got = states[address]
        info = (infos or {}).get(address)
        if isinstance(got, admin_pb2.ClusterStateReply):
            me = find_node(got, got.myself)
            nodes.append(
                {
                    "address": address,
                    "id": got.myself,
                    "reachable": True,
                    "role": role_name(me.node) if me else None,
                    "primary_id": (me.node.primary_id or None) if me else None,
                    "replication": sync_summary(info)
                    if isinstance(info, admin_pb2.InfoReply)
                    else None,
                    "cluster_ok": got.cluster_ok,
                    "known_nodes": got.known_nodes,
                    "slots_assigned": got.slots_assigned,
                    "error": None,
                }
            )
        else:
            nodes.append(
                {
                    "address": address,
                    "id": node_id,
                    "reachable": False,
                    "role": None,
                    "primary_id": None,
                    "replication": None,
                    "cluster_ok": None,
                    "known_nodes": None,
                    "slots_assigned": None,
                    "error": str(got),
                }
            )
    return {
        "ok": not problems,
        "problems": list(problems),
        "warnings": list(warnings),
        "nodes": nodes,
    }


CHECK_COLUMNS = (
    "address",
    "id",
    "answers",
    "role",
    "replication",
    "cluster",
    "known nodes",
    "slots assigned",
)


def _role_cell(node: Mapping[str, Any]) -> str:
    if node["role"] is None:
        return "-"
    if node["primary_id"]:
        return f"{node['role']} of {short_id(node['primary_id'])}"
    return str(node["role"])


def check_rows(data: Mapping[str, Any]) -> list[list[object]]:
    """Table rows for ``check``, in :data:`CHECK_COLUMNS` order."""
    return [
        [
            n["address"],
            short_id(n["id"]),
            "yes" if n["reachable"] else "NO",
            _role_cell(n),
            n["replication"] or "-",
            "-" if n["cluster_ok"] is None else ("ok" if n["cluster_ok"] else "FAIL"),
            "-" if n["known_nodes"] is None else n["known_nodes"],
            "-" if n["slots_assigned"] is None else n["slots_assigned"],
        ]
        for n in data["nodes"]
    ]
