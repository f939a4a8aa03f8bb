"""The persistent part of a node's view, as plain data (Redis keeps it in nodes.conf).

Only what must survive a restart is kept: identities, addresses, roles,
epochs, the last vote and slot ownership. Liveness (pings, PFAIL, FAIL) is
rebuilt from scratch after a restart, as the node re-learns it quickly.
"""

from __future__ import annotations

import random as _random
from typing import Any

from ..membership.machine import Membership, Remembered
from ..membership.model import PRIMARY, PROXY, REPLICA, Address, MembershipConfig, Peer, role_name

FORMAT_VERSION = 1
_ROLES = {"primary": PRIMARY, "replica": REPLICA, "proxy": PROXY}


def snapshot(m: Membership) -> dict[str, Any]:
    """The state to persist."""
    return {
        "version": FORMAT_VERSION,
        "myself": m.id.hex(),
        "current_epoch": m.current_epoch,
        "last_vote_epoch": m.last_vote_epoch,
        "nodes": [_node(m, peer) for peer in m.nodes.values()],
    }


def _node(m: Membership, peer: Peer) -> dict[str, Any]:
    flat = m.slots.flat_ranges(peer.id)
    return {
        "id": peer.id.hex(),
        "host": peer.address.host,
        "port": peer.address.port,
        "bus_port": peer.address.bus_port,
        "resp_port": peer.address.resp_port,
        "role": role_name(peer.flags),
        "primary": peer.primary_id.hex(),
        "config_epoch": peer.config_epoch,
        # The table's cached ranges: a node file is saved on every config change.
        "slots": [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)],
    }


def restore(
    data: dict[str, Any],
    config: MembershipConfig,
    address: Address,
    now: int,
    random: _random.Random | None = None,
) -> Membership:
    """Rebuild a membership from :func:`snapshot` output; ``address`` is where we listen now."""
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported node file version {data.get('version')!r}")
    my_id = bytes.fromhex(data["myself"])
    peers = {}
    slots: dict[bytes, list[int]] = {}
    for entry in data["nodes"]:
        node_id = bytes.fromhex(entry["id"])
        peers[node_id] = Peer(
            id=node_id,
            address=Address(
                entry["host"],
                int(entry["port"]),
                int(entry["bus_port"]),
                # Node files written before the RESP listener existed have none.
                int(entry.get("resp_port", 0)),
            ),
            flags=_ROLES.get(entry["role"], PRIMARY),
            config_epoch=int(entry["config_epoch"]),
            primary_id=bytes.fromhex(entry["primary"]),
        )
        slots[node_id] = [
            slot for start, end in entry["slots"] for slot in range(int(start), int(end) + 1)
        ]
    if my_id not in peers:
        raise ValueError("node file does not describe this node")
    myself = peers.pop(my_id)
    myself.address = address
    remembered = Remembered(
        current_epoch=int(data["current_epoch"]),
        last_vote_epoch=int(data["last_vote_epoch"]),
        peers=tuple(peers.values()),
        slots=slots,
    )
    return Membership(config, myself, now, random=random, remembered=remembered)
