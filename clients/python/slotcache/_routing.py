"""Pure routing helpers: which keys a command touches, how to split it by owner, MOVED.

Multi-key commands (MGet, MSet, MDelete) may span several nodes. The core
groups their keys by owner, sends one part per node, and merges the replies
back into request order, so callers see one reply exactly as if one node had
served everything. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slotcache.contract import OPS_BY_RPC, SLOT_COUNT, Reason
from slotcache.errors import InvalidArgument, SlotcacheError


def command_keys(rpc: str, request: Any) -> list[bytes]:
    """The keys a request touches, in request order."""
    return OPS_BY_RPC[rpc].keys(request)


def group_by_owner(
    indices: Iterable[int], owner: Callable[[int], str], labels: Sequence[int] | None = None
) -> dict[str, list[int]]:
    """Key indices grouped by the address that serves them, each group in request order.

    With ``labels``, ``owner`` is asked about each index but the groups hold
    ``labels[index]`` instead.
    """
    groups: dict[str, list[int]] = {}
    for i in indices:
        address = owner(i)
        label = i if labels is None else labels[i]
        group = groups.get(address)
        if group is None:
            groups[address] = [label]
        else:
            group.append(label)
    return groups


def check_before_split(rpc: str, request: Any) -> None:
    """Refuse, before anything is sent, what every node would refuse in a split request.

    One node validates a whole multi-key request before it writes anything.
    Once the request is split, each node validates only its part, and a bad
    entry could fail one part after another part was written. Empty keys and
    negative TTLs are invalid on every node, so they are caught here; size
    limits depend on each node's configuration and stay the nodes' call.
    """
    keys = command_keys(rpc, request)
    for i, key in enumerate(keys):
        if not key:
            raise InvalidArgument(f"keys[{i}] is empty")
    if rpc == "MSet":
        for i, entry in enumerate(request.entries):
            if entry.ttl_ms < 0:
                raise InvalidArgument(f"entries[{i}].ttl_ms must not be negative")


@dataclass(frozen=True, slots=True)
class Redirect:
    """What a MOVED said: ``slot`` is served at ``address`` as of ``epoch``."""

    slot: int
    address: str
    epoch: int


def parse_moved(error: SlotcacheError) -> Redirect | None:
    """The redirect a MOVED error carries, or None for any other (or malformed) error.

    A MOVED without a usable slot or address cannot be followed; it is then
    raised to the caller like any other refusal instead of being guessed at.
    """
    if error.reason != Reason.MOVED:
        return None
    metadata = error.metadata
    address = metadata.get("address", "")
    try:
        slot = int(metadata["slot"])
        epoch = int(metadata.get("epoch") or 0)
    except (KeyError, ValueError):
        return None
    if not address or not 0 <= slot < SLOT_COUNT or epoch < 0:
        return None
    return Redirect(slot, address, epoch)
