"""Reading a settled cluster back for the history checker: owners' values, claims, log events."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from slotcache.ctl.launcher import ServerProcess
from tests.support.nodes import NodeStubs, owners_by_slot, slot_of
from tests.support.workload import read_values

# Lines the server logs (cluster_runtime) when this node is promoted, or marks a peer FAIL.
PROMOTED = re.compile(r"now a primary")
MARKED_FAIL = re.compile(r"node [0-9a-f]+ marked FAIL")
STATE_FAIL = re.compile(r"cluster state is now fail")


def own_claims(nodes: Iterable[NodeStubs]) -> dict[str, list[int]]:
    """Each node's slots as it claims them itself (its own entry of its own topology)."""
    claims: dict[str, list[int]] = {}
    for node in nodes:
        topology = node.topology()
        for entry in topology.nodes:
            if entry.id == topology.responder_id:
                claims[node.address] = [s for r in entry.slots for s in range(r.start, r.end + 1)]
    return claims


def read_from_owners(
    nodes: Sequence[NodeStubs], keys: Sequence[bytes]
) -> dict[bytes, bytes | None]:
    """Every key read from the node that owns its slot (no forwarding on the way)."""
    owners = owners_by_slot(nodes[0].topology())
    by_address = {n.address: n for n in nodes}
    grouped: dict[str, list[bytes]] = {}
    for key in keys:
        grouped.setdefault(owners[slot_of(key)], []).append(key)
    out: dict[bytes, bytes | None] = {}
    for address, group in grouped.items():
        out.update(read_values(by_address[address], group))
    return out


def log_events(servers: Iterable[ServerProcess], pattern: re.Pattern[str]) -> int:
    """How many lines of the servers' logs match ``pattern``."""
    return sum(len(pattern.findall(server.log())) for server in servers)
