"""The wire contract every slotcache component speaks, written down once.

The server, the SDK and clusterctl must agree byte for byte on how a key
maps to a slot, which request metadata means what, which error reasons a
client may act on, and how a multi-key request is split by owner and
merged back. Each of them imports these definitions from here, so they
cannot drift apart; a unit test pins the slot function to Redis's own
numbers. Everything here is pure: no I/O, no gRPC calls, only the public
``slotcache.v1`` messages that multi-key requests are built from.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.rpc import error_details_pb2, status_pb2

from slotcache.v1 import cache_pb2 as pb

__all__ = [
    "ERROR_DOMAIN",
    "HOPS_KEY",
    "LAG_MS_KEY",
    "LAG_OPS_KEY",
    "MAX_HOPS",
    "NODE_CERT_URI",
    "OPS",
    "OPS_BY_RPC",
    "REDIRECT_KEY",
    "REPLICA_READ_KEY",
    "SLOT_COUNT",
    "STANDBY_FILE",
    "STATUS_DETAILS_KEY",
    "TRACEPARENT_KEY",
    "TRACK_KEY",
    "MultiKey",
    "Op",
    "Reason",
    "ShortReply",
    "error_info",
    "hash_tag",
    "key_slot",
    "key_slots",
    "split_slots",
    "to_ranges",
]

# ---- slots -------------------------------------------------------------------------

SLOT_COUNT = 16384
_SLOT_MASK = SLOT_COUNT - 1


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed.

    Only the first ``{`` counts, and only when a ``}`` follows it with at least
    one byte between them; otherwise the whole key is hashed. Keys that share
    a tag share a slot, so a multi-key call on them reaches one node.
    """
    start = key.find(b"{")
    if start == -1:
        return key
    end = key.find(b"}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1 : end]


def key_slot(key: bytes) -> int:
    """The slot of ``key`` in ``0..16383``: CRC16/XMODEM of its hash tag, as Redis Cluster.

    Every request hashes its key, so a key without ``{`` (most keys) skips
    the hash-tag search.
    """
    if b"{" not in key:
        return crc_hqx(key, 0) & _SLOT_MASK
    return crc_hqx(hash_tag(key), 0) & _SLOT_MASK


def key_slots(keys: Iterable[bytes]) -> list[int]:
    """The slot of each key; keys without a ``{`` skip the hash-tag search (the common case)."""
    return [crc_hqx(k, 0) & _SLOT_MASK if b"{" not in k else key_slot(k) for k in keys]


def to_ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Slots as sorted inclusive ``(start, end)`` ranges, the way the wire and people name them."""
    ranges: list[tuple[int, int]] = []
    for slot in sorted(set(slots)):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


def split_slots(n: int) -> list[tuple[int, int]]:
    """All slots as ``n`` contiguous, near-equal inclusive ranges (the first ones one larger).

    This is the split ``clusterctl create`` makes, so a simulated cluster
    and a real one start from the same layout.
    """
    if n < 1:
        raise ValueError("need at least one primary")
    base, extra = divmod(SLOT_COUNT, n)
    ranges: list[tuple[int, int]] = []
    start = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


# ---- metadata ----------------------------------------------------------------------

#: Request metadata: answer MOVED instead of forwarding (smart clients send it).
REDIRECT_KEY = "slotcache-redirect"
#: Request metadata: a replica of the owner may serve this read.
REPLICA_READ_KEY = "slotcache-replica-read"
#: Request metadata: how many nodes already forwarded this call.
HOPS_KEY = "slotcache-hops"
#: Request metadata: the near-cache subscription a read is tracked for.
TRACK_KEY = "slotcache-track"
#: Request metadata: the W3C trace context; nodes pass it on when they forward.
TRACEPARENT_KEY = "traceparent"
#: Trailing metadata of a replica read: how stale the answer may be.
LAG_MS_KEY = "slotcache-replica-lag-ms"
LAG_OPS_KEY = "slotcache-replica-lag-ops"
#: Forwarding hops allowed before a call is refused, so that views which
#: disagree for a moment cannot bounce a call around forever.
MAX_HOPS = 3

# ---- node certificates -------------------------------------------------------------

#: The URI subject alternative name that makes a certificate a node's: with
#: --tls-cluster a node acts only on node-to-node calls whose mTLS client
#: certificate carries it, so a client certificate from the same CA cannot
#: pose as a node. Whoever issues certificates puts it in node ones only.
NODE_CERT_URI = "urn:slotcache:node"

# ---- restarts ------------------------------------------------------------------------

#: In a node's data directory while a replacement started with --takeover-pid
#: waits for the running process to exit: it holds the replacement's pid, and
#: tells whoever restarts the node (clusterctl rolling-restart) that the
#: replacement has started and it is time to stop the old process.
STANDBY_FILE = "standby.pid"


class Reason(StrEnum):
    """``google.rpc.ErrorInfo.reason`` values a client may act on."""

    #: FAILED_PRECONDITION: the slot is served elsewhere; metadata slot, address, epoch.
    MOVED = "MOVED"
    #: UNAVAILABLE: no node can serve the slot right now; retry later.
    CLUSTER_DOWN = "CLUSTERDOWN"
    #: FAILED_PRECONDITION: fewer replicas in sync than the write asked for; not applied.
    NOT_ENOUGH_REPLICAS = "NOT_ENOUGH_REPLICAS"
    #: DEADLINE_EXCEEDED: applied on the primary, not acknowledged by enough replicas in time.
    REPLICATION_TIMEOUT = "REPLICATION_TIMEOUT"
    #: FAILED_PRECONDITION: ``incr`` on a value that is not a decimal integer.
    NOT_INTEGER = "NOT_INTEGER"
    #: FAILED_PRECONDITION: ``incr`` would leave the signed 64-bit range.
    INTEGER_OVERFLOW = "INTEGER_OVERFLOW"
    #: RESOURCE_EXHAUSTED: maxmemory reached and the policy may not evict.
    OOM = "OOM"
    #: FAILED_PRECONDITION: a tracked read names a subscription this node does not hold.
    NO_SUBSCRIPTION = "NO_SUBSCRIPTION"
    #: PERMISSION_DENIED: the user may not run the operation (on that key); metadata user, op.
    NO_PERMISSION = "NOPERM"
    #: RESOURCE_EXHAUSTED: the request exceeds an input limit; nothing ran.
    #: Metadata: limit (the server flag without dashes), max, value.
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


#: The ``ErrorInfo.domain`` of every reason above.
ERROR_DOMAIN = "slotcache.io"
#: The trailer that carries a ``google.rpc.Status`` with the ErrorInfo, in any language.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def error_info(trailers: Iterable[tuple[str, Any]] | None) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata a failed call's trailers carry; ``("", {})`` if none."""
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY:
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info.reason, dict(info.metadata)
    return "", {}


# ---- operations --------------------------------------------------------------------


class ShortReply(ValueError):
    """A node answered part of a split request with the wrong number of results."""


@dataclass(frozen=True, slots=True)
class MultiKey:
    """How to take one multi-key request apart by owner and put the replies back together."""

    subset: Callable[[Any, Sequence[int]], Any]
    new_reply: Callable[[int], Any]
    merge: Callable[[Any, Sequence[int], Any], None]


@dataclass(frozen=True, slots=True)
class Op:
    """One Cache operation as every component names and routes it.

    ``field`` is its ``Operation``/``OperationResult`` oneof field in a
    Pipeline message, ``rpc`` its unary method. ``multi`` is set for the
    operations that may span owners.
    """

    field: str
    rpc: str
    writes: bool
    keys: Callable[[Any], list[bytes]]
    multi: MultiKey | None = None


def _new_mget(n: int) -> pb.MGetReply:
    reply = pb.MGetReply()
    for _ in range(n):
        reply.results.add()
    return reply


def _merge_mget(reply: pb.MGetReply, indices: Sequence[int], part: pb.MGetReply) -> None:
    if len(part.results) != len(indices):
        raise ShortReply(f"MGet part with {len(indices)} keys came back with {len(part.results)}")
    for i, result in zip(indices, part.results, strict=True):
        reply.results[i].CopyFrom(result)


def _merge_mset(reply: pb.MSetReply, indices: Sequence[int], part: pb.MSetReply) -> None:
    # Older servers leave ``applied`` empty; every part then counts as not reported.
    for i, applied in zip(indices, part.applied, strict=False):
        reply.applied[i] = applied


def _merge_mdelete(reply: pb.MDeleteReply, indices: Sequence[int], part: pb.MDeleteReply) -> None:
    reply.deleted += part.deleted


def _durable(part: Any, whole: Any) -> Any:
    """Every part of a split write asks for the ``min_replicas`` the whole did."""
    if whole.HasField("min_replicas"):
        part.min_replicas = whole.min_replicas
    return part


def _key(request: Any) -> list[bytes]:
    return [request.key]


def _single(field: str, rpc: str, writes: bool) -> Op:
    return Op(field, rpc, writes, _key)


_OPS = (
    _single("get", "Get", False),
    _single("set", "Set", True),
    _single("delete", "Delete", True),
    _single("exists", "Exists", False),
    _single("expire", "Expire", True),
    _single("ttl", "Ttl", False),
    _single("incr", "Incr", True),
    Op(
        "mget",
        "MGet",
        False,
        lambda r: list(r.keys),
        MultiKey(
            lambda r, idx: pb.MGetRequest(keys=[r.keys[i] for i in idx]),
            _new_mget,
            _merge_mget,
        ),
    ),
    Op(
        "mset",
        "MSet",
        True,
        lambda r: [e.key for e in r.entries],
        MultiKey(
            lambda r, idx: _durable(pb.MSetRequest(entries=[r.entries[i] for i in idx]), r),
            lambda n: pb.MSetReply(applied=[False] * n),
            _merge_mset,
        ),
    ),
    Op(
        "mdelete",
        "MDelete",
        True,
        lambda r: list(r.keys),
        MultiKey(
            lambda r, idx: _durable(pb.MDeleteRequest(keys=[r.keys[i] for i in idx]), r),
            lambda n: pb.MDeleteReply(),
            _merge_mdelete,
        ),
    ),
)
#: Every operation by its Pipeline field name (``"get"``) ...
OPS: dict[str, Op] = {op.field: op for op in _OPS}
#: ... and by its unary method name (``"Get"``).
OPS_BY_RPC: dict[str, Op] = {op.rpc: op for op in _OPS}
