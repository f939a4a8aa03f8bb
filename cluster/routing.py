"""Routing decisions and the pure pieces of fan-out: no I/O here.

A request's keys map to slots; each slot is served here, forwarded to its
owner, or (when the caller asked for redirects) refused with MOVED. Multi-key
requests are split by owner and their replies merged back into request
order, so MGet, MSet and MDelete work across nodes, unlike Redis's CROSSSLOT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from slotcache.v1 import cache_pb2 as pb

from .executor import CommandError
from .ownership import Owner

# Request metadata understood by every node.
REDIRECT_KEY = "slotcache-redirect"
REPLICA_READ_KEY = "slotcache-replica-read"
HOPS_KEY = "slotcache-hops"
# Forwarding hops allowed before a request is refused: views that disagree
# for a moment must not bounce a request around forever.
MAX_HOPS = 3
REASON_MOVED = "MOVED"
REASON_CLUSTER_DOWN = "CLUSTERDOWN"

READ_OPS = frozenset({"get", "exists", "ttl", "mget"})


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What the caller asked for, read from request metadata."""

    redirect: bool = False
    hops: int = 0
    replica_read: bool = False


def call_options(metadata: Iterable[tuple[str, Any]] | None) -> CallOptions:
    """Parse the routing metadata of a call."""
    redirect, hops, replica_read = False, 0, False
    for key, value in metadata or ():
        if key == REDIRECT_KEY:
            redirect = value not in ("", "0", "false")
        elif key == REPLICA_READ_KEY:
            replica_read = value not in ("", "0", "false")
        elif key == HOPS_KEY:
            try:
                hops = int(value)
            except ValueError:
                hops = MAX_HOPS
    return CallOptions(redirect, max(hops, 0), replica_read)


def moved(slot: int, owner: Owner) -> CommandError:
    """FAILED_PRECONDITION with ErrorInfo MOVED {slot, address, epoch}, as the design requires."""
    return CommandError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"MOVED {slot} {owner.address}",
        REASON_MOVED,
        {
            "slot": str(slot),
            "address": owner.address,
            "epoch": str(owner.epoch),
            "node_id": owner.id,
        },
    )


def cluster_down(why: str) -> CommandError:
    """UNAVAILABLE: retrying later (after a failover or repair) may succeed."""
    return CommandError(grpc.StatusCode.UNAVAILABLE, f"CLUSTERDOWN {why}", REASON_CLUSTER_DOWN)


def handoff_pending(slot: int) -> CommandError:
    """UNAVAILABLE: a write waited as long as it may for a migration's handoff; retry it.

    It is not applied here: the target may take the slot at any moment, and a
    write applied by the old owner after that would be lost.
    """
    return CommandError(
        grpc.StatusCode.UNAVAILABLE,
        f"slot {slot} is being handed over to another node; try again",
        REASON_CLUSTER_DOWN,
    )


def hop_limit(slot: int) -> CommandError:
    """The request was forwarded too often: nodes disagree about the owner right now."""
    return CommandError(
        grpc.StatusCode.UNAVAILABLE,
        f"slot {slot}: forwarded {MAX_HOPS} times without reaching its owner; views disagree",
        REASON_CLUSTER_DOWN,
    )


# ---- multi-key requests ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiOp:
    """How to split a multi-key request by owner and merge the parts back."""

    rpc: str
    keys: Callable[[Any], list[bytes]]
    subset: Callable[[Any, list[int]], Any]
    new_reply: Callable[[int], Any]
    merge: Callable[[Any, list[int], Any], None]


def _merge_mget(reply: pb.MGetReply, indices: list[int], part: pb.MGetReply) -> None:
    for i, result in zip(indices, part.results, strict=True):
        reply.results[i].CopyFrom(result)


def _merge_mset(reply: pb.MSetReply, indices: list[int], part: pb.MSetReply) -> None:
    for i, applied in zip(indices, part.applied, strict=True):
        reply.applied[i] = applied


def _merge_mdelete(reply: pb.MDeleteReply, indices: list[int], part: pb.MDeleteReply) -> None:
    reply.deleted += part.deleted


def _keep_min_replicas(original: Any, part: Any) -> Any:
    """A part of a split write asks for the same replicas as the whole."""
    if original.HasField("min_replicas"):
        part.min_replicas = original.min_replicas
    return part


def _new_mget(n: int) -> pb.MGetReply:
    reply = pb.MGetReply()
    for _ in range(n):
        reply.results.add()
    return reply


MULTI_OPS: dict[str, MultiOp] = {
    "mget": MultiOp(
        "MGet",
        lambda r: list(r.keys),
        lambda r, idx: pb.MGetRequest(keys=[r.keys[i] for i in idx]),
        _new_mget,
        _merge_mget,
    ),
    "mset": MultiOp(
        "MSet",
        lambda r: [e.key for e in r.entries],
        lambda r, idx: _keep_min_replicas(r, pb.MSetRequest(entries=[r.entries[i] for i in idx])),
        lambda n: pb.MSetReply(applied=[False] * n),
        _merge_mset,
    ),
    "mdelete": MultiOp(
        "MDelete",
        lambda r: list(r.keys),
        lambda r, idx: _keep_min_replicas(r, pb.MDeleteRequest(keys=[r.keys[i] for i in idx])),
        lambda n: pb.MDeleteReply(),
        _merge_mdelete,
    ),
}

SINGLE_KEY_RPCS = {
    "get": "Get",
    "set": "Set",
    "delete": "Delete",
    "exists": "Exists",
    "expire": "Expire",
    "ttl": "Ttl",
    "incr": "Incr",
}


def op_keys(kind: str, request: Any) -> list[bytes]:
    """The keys an operation touches."""
    multi = MULTI_OPS.get(kind)
    return multi.keys(request) if multi is not None else [request.key]
