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

from slotcache._slots import SLOT_COUNT
from slotcache.errors import InvalidArgument, SlotcacheError
from slotcache.v1 import cache_pb2 as pb

REASON_MOVED = "MOVED"


@dataclass(frozen=True, slots=True)
class MultiKey:
    """How to take one multi-key request apart and put its replies back together."""

    keys: Callable[[Any], list[bytes]]
    subset: Callable[[Any, Sequence[int]], Any]
    new_reply: Callable[[int], Any]
    merge: Callable[[Any, Sequence[int], Any], None]


def _new_mget(n: int) -> pb.MGetReply:
    reply = pb.MGetReply()
    for _ in range(n):
        reply.results.add()
    return reply


def _merge_mget(reply: pb.MGetReply, indices: Sequence[int], part: pb.MGetReply) -> None:
    if len(part.results) != len(indices):
        raise _short_reply("MGet", len(indices), len(part.results))
    for i, result in zip(indices, part.results, strict=True):
        reply.results[i].CopyFrom(result)


def _merge_mset(reply: pb.MSetReply, indices: Sequence[int], part: pb.MSetReply) -> None:
    # Older servers may leave ``applied`` empty; the SDK's mset returns None anyway.
    for i, applied in zip(indices, part.applied, strict=False):
        reply.applied[i] = applied


def _merge_mdelete(reply: pb.MDeleteReply, indices: Sequence[int], part: pb.MDeleteReply) -> None:
    reply.deleted += part.deleted


def _short_reply(rpc: str, sent: int, got: int) -> SlotcacheError:
    return SlotcacheError(f"{rpc} part with {sent} keys came back with {got} results")


def _durable(part: Any, whole: Any) -> Any:
    """Every part of a split write asks for the ``min_replicas`` the whole did."""
    if whole.HasField("min_replicas"):
        part.min_replicas = whole.min_replicas
    return part


MULTI_KEY: dict[str, MultiKey] = {
    "MGet": MultiKey(
        lambda r: list(r.keys),
        lambda r, idx: pb.MGetRequest(keys=[r.keys[i] for i in idx]),
        _new_mget,
        _merge_mget,
    ),
    "MSet": MultiKey(
        lambda r: [e.key for e in r.entries],
        lambda r, idx: _durable(pb.MSetRequest(entries=[r.entries[i] for i in idx]), r),
        lambda n: pb.MSetReply(applied=[False] * n),
        _merge_mset,
    ),
    "MDelete": MultiKey(
        lambda r: list(r.keys),
        lambda r, idx: _durable(pb.MDeleteRequest(keys=[r.keys[i] for i in idx]), r),
        lambda n: pb.MDeleteReply(),
        _merge_mdelete,
    ),
}


def command_keys(rpc: str, request: Any) -> list[bytes]:
    """The keys a request touches, in request order."""
    multi = MULTI_KEY.get(rpc)
    return multi.keys(request) if multi is not None else [request.key]


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
    if error.reason != REASON_MOVED:
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
