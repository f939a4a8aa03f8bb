"""Typed exceptions for failed calls, mapped from gRPC status codes.

Callers catch what they can act on (a missing precondition, memory
pressure, an unreachable node) rather than inspecting status codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import grpc

from slotcache.contract import Reason, error_info


class SlotcacheError(Exception):
    """Base class for every error the SDK raises for a failed operation."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self, message: str, *, reason: str = "", metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(SlotcacheError):
    """The request was malformed: an empty or oversized key, a negative TTL, ..."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(SlotcacheError):
    """The request was valid but the key's state refused it (e.g. Incr on a non-integer)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotEnoughReplicas(FailedPrecondition):
    """A write asked for ``min_replicas`` but fewer replicas are in sync: it was NOT applied.

    The node refuses before applying anything, so the key is exactly as it
    was, and the client resends the write with backoff within the call's
    deadline (a replica may be reconnecting after a restart or a failover).
    Raised once that is spent: whether to wait longer, write with a lower
    ``min_replicas`` or give up is then the caller's decision. ``metadata``
    carries ``required`` and ``available``.
    """


class Moved(FailedPrecondition):
    """The node does not serve the key's slot; ``address`` does (a smart client follows this).

    The clients follow MOVED themselves and raise it only after too many in a
    row for one call, so seeing one means the nodes' views disagree.
    """

    @property
    def slot(self) -> int | None:
        """The slot the redirect is about, if the server said."""
        return _int(self.metadata.get("slot"))

    @property
    def address(self) -> str:
        """``host:port`` of the node that serves the slot."""
        return self.metadata.get("address", "")

    @property
    def epoch(self) -> int | None:
        """The epoch of the view the redirect came from, if the server said."""
        return _int(self.metadata.get("epoch"))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class ResourceExhausted(SlotcacheError):
    """A limit was hit: a message too large for gRPC, or the node's memory (see OutOfMemory)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfMemory(ResourceExhausted):
    """The node is at maxmemory and its policy cannot evict; reads still work."""


class LimitExceeded(ResourceExhausted):
    """The request exceeds one of the node's input limits; nothing of it ran.

    Too many keys in one multi-key call, too many operations in one Pipeline
    message, too many Subscribe streams on the node. Split the request, or
    have the operator raise the limit with the server flag ``--<limit>``.
    The connection is fine: other calls go on.
    """

    @property
    def limit(self) -> str:
        """The limit's name, which is also its server flag without the dashes."""
        return self.metadata.get("limit", "")

    @property
    def maximum(self) -> int | None:
        """The limit's value on the node."""
        return _int(self.metadata.get("max"))

    @property
    def value(self) -> int | None:
        """How many the request had."""
        return _int(self.metadata.get("value"))


class MessageTooLarge(ResourceExhausted):
    """A message was larger than gRPC accepts; the node never read it.

    The node's ``--max-message-bytes`` sets the size it accepts. gRPC refuses
    the message before the node sees it, so there is no ErrorInfo, only
    gRPC's own words, which this error completes with the flag to raise.
    """


#: How gRPC words a refused message ("Received message larger than max (N vs. M)").
_TOO_LARGE_TEXT = "message larger than max"
_TOO_LARGE_HINT = "the node's limit is its --max-message-bytes: split the request or raise it"


class Unavailable(SlotcacheError):
    """The node could not be reached, or is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE


class ClusterDown(Unavailable):
    """The cluster refused the request without running it (reason CLUSTERDOWN).

    Slots are uncovered, the node cannot see a majority, or nodes disagree
    about an owner for the moment (the forwarding hop limit was hit).
    Safe to retry (even a non-idempotent command), which the clients do
    within the call's deadline.
    """


class Timeout(SlotcacheError):
    """The call's deadline passed; a write may or may not have been applied."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ReplicationTimeout(Timeout):
    """A write asked for ``min_replicas`` and they did not acknowledge it in time.

    The write WAS applied on the primary: readers of the primary see it now.
    It may or may not survive a failover, since fewer replicas than asked
    hold it. The client never retries it (a retry would not make it more
    durable, and a non-idempotent one would apply twice). ``metadata``
    carries ``required`` and ``acknowledged``.
    """


class NotSent(Unavailable):
    """The operation never left this client: its stream broke or closed before it was written.

    The node cannot have run it, so even a non-idempotent operation is resent
    automatically; callers see this only when retries are exhausted.
    """


class Unauthenticated(SlotcacheError):
    """The node has users and the call's credentials prove none (or none were given).

    The message is the same whatever was wrong, so it tells a guesser nothing;
    check the client's ``token=`` (or ``user=``/``password=``) option.
    """

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SlotcacheError):
    """The authenticated user may not run this operation, or not on this key.

    The message names the operation, the key and the user's rule;
    ``metadata`` carries ``user`` and ``op``.
    """

    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(SlotcacheError):
    """The call was cancelled before it completed."""

    code = grpc.StatusCode.CANCELLED


class DecodeError(SlotcacheError):
    """A stored value could not be turned back into an object (corrupt, or an unknown format).

    Raised by the client, not by a node: the read itself succeeded.
    """

    code = grpc.StatusCode.DATA_LOSS


class DecryptionError(DecodeError):
    """An encrypted value failed authentication, or cannot be decrypted with this keyring.

    The causes are indistinguishable by design: the ciphertext (or its key id)
    was tampered with, it was copied from another key (the key name is bound
    as associated data), it was encrypted under a key id this keyring does
    not hold, or the value is not encrypted while the keyring requires it.
    """


#: What to check when no node could be reached at all (clusterctl says the same).
CONNECT_HINT = "is it running, and is the address right?"


#: gRPC's words when the peer closed the connection right after it opened, as a node
#: does to a plaintext client on a TLS port, or to a TLS client without a certificate
#: when it requires one.
_CLOSED = ("Socket closed", "Connection reset")
#: gRPC's words when the TLS handshake itself failed.
_HANDSHAKE = ("handshake", "SSL", "certificate")


def connect_hint(message: str) -> str:
    """What to check after a connection failure gRPC described as ``message``.

    Transport security problems look like a dead node to gRPC; the hint
    names the TLS settings when the words suggest them.
    """
    if any(word in message for word in _CLOSED):
        return (
            f"{CONNECT_HINT} The node closed the connection at once: it may require TLS "
            "(SDK: tls=slotcache.TlsOptions(ca=...); clusterctl: --tls-ca), or a client "
            "certificate (TlsOptions cert= and key=; clusterctl: --tls-cert and --tls-key)"
        )
    if any(word in message for word in _HANDSHAKE):
        return (
            f"{CONNECT_HINT} The TLS handshake failed: is this the node's TLS port, and "
            "does the CA given sign the node's certificate?"
        )
    return CONNECT_HINT


def with_connect_hint(error: SlotcacheError, addresses: Sequence[str]) -> SlotcacheError:
    """``error`` again, of the same type, saying which addresses failed and what to check.

    gRPC's own words (``failed to connect to all addresses; ...``) are
    accurate but name neither what the caller gave nor what to do about it.
    """
    where = ", ".join(addresses)
    hinted = type(error)(
        f"cannot reach {where} ({error.message}); {connect_hint(error.message)}",
        reason=error.reason,
        metadata=error.metadata,
    )
    hinted.code = error.code
    return hinted


_BY_CODE: dict[grpc.StatusCode, type[SlotcacheError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        Timeout,
        Cancelled,
        Unauthenticated,
        PermissionDenied,
    )
}
_BY_REASON: dict[str, type[SlotcacheError]] = {
    Reason.OOM: OutOfMemory,
    Reason.LIMIT_EXCEEDED: LimitExceeded,
    Reason.MOVED: Moved,
    Reason.CLUSTER_DOWN: ClusterDown,
    Reason.NOT_ENOUGH_REPLICAS: NotEnoughReplicas,
    Reason.REPLICATION_TIMEOUT: ReplicationTimeout,
}


def error_for(
    code: grpc.StatusCode,
    message: str,
    reason: str = "",
    metadata: Mapping[str, str] | None = None,
) -> SlotcacheError:
    """Build the typed exception for a status."""
    cls = _BY_REASON.get(reason)
    if not reason and code == ResourceExhausted.code and _TOO_LARGE_TEXT in message.lower():
        cls, message = MessageTooLarge, f"{message}; {_TOO_LARGE_HINT}"
    if cls is None or cls.code != code:
        # A reason only picks a subclass of the exception its status code maps to.
        cls = _BY_CODE.get(code, SlotcacheError)
    err = cls(message, reason=reason, metadata=metadata)
    if cls is SlotcacheError:
        err.code = code
    return err


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def from_status_number(
    number: int, message: str, reason: str = "", metadata: Mapping[str, str] | None = None
) -> SlotcacheError:
    """Build the typed exception for a ``google.rpc.Code`` number (a Pipeline ``Error``)."""
    code = _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
    return error_for(code, message or code.name, reason, metadata)


def from_rpc_error(exc: grpc.RpcError) -> SlotcacheError:
    """Translate a failed gRPC call, reading the ErrorInfo detail when the server sent one."""
    call = cast(grpc.Call, exc)
    code = call.code()
    message = call.details() or code.name
    trailers: Any = call.trailing_metadata()
    reason, metadata = error_info(trailers)
    return error_for(code, message, reason, metadata)
