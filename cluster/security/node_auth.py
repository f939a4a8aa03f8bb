"""Node authentication: only cluster members may speak on the bus and its streams.

A node acts on gossip, failure reports, votes, slot claims, replication and
migration streams as if they came from its peers, so whoever can reach the
bus port can otherwise take the cluster apart. Two proofs of membership,
either or both configured:

- **A cluster secret** (``--cluster-secret-file``): every node-to-node call
  carries a token, an HMAC-SHA256 under the secret over the method, a
  timestamp, a random nonce, the node the call is meant for, and the
  message's bytes where there is one message (a bus exchange). A token is
  accepted once (the nonce) and only while fresh (the time window), so a
  recorded call cannot be played again, nor sent to another node.
- **Node certificates** (``--tls-cluster``): the caller's mTLS certificate
  must be a node certificate, which carries the URI SAN ``NODE_CERT_URI``.
  A client certificate from the same CA does not, so a client cannot pose
  as a node.

With neither, every call is accepted, as before authentication existed.

The crypto and the replay bookkeeping are pure functions and objects with
an injected clock (:func:`sign`, :func:`verify`, :class:`ReplayGuard`);
:class:`NodeAuth` joins them to gRPC metadata and the auth context.
"""

from __future__ import annotations

import base64
import heapq
import hmac
import logging
import secrets as random_source
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import grpc

from slotcache.contract import NODE_CERT_URI

from .cluster_secret import SecretFile

log = logging.getLogger(__name__)

METADATA_KEY = "slotcache-node-auth"
VERSION = "v1"
# Accepted clock difference between the signer and the checker, either way.
# It must exceed the worst clock skew between two nodes plus a call's delay
# (bus calls time out in well under a second); NTP keeps hosts within
# milliseconds, so 30 s tolerates a badly drifting clock. It only bounds
# how long a nonce must be remembered: replays inside it are caught by the
# nonce cache, replays after it by the timestamp.
WINDOW_MS = 30_000
# Nonces remembered at most. Every accepted token stays for the window, so
# this covers ~800 calls/s sustained for a whole window; past it the oldest
# nonce is forgotten and tokens as old as it are refused (the window shrinks
# under load instead of replays getting through). About 250 bytes each.
NONCE_CAPACITY = 50_000
NONCE_BYTES = 12
LOG_EVERY_S = 10.0
# Appended to the method an answer's token is signed over, so no answer passes as a call.
REPLY = "#reply"


class Refusal(Enum):
    """Why a call was not accepted as a member's; the value labels the refusal counter."""

    MISSING = "missing"
    MALFORMED = "malformed"
    BAD_MAC = "bad_mac"
    STALE = "stale"
    REPLAYED = "replayed"
    WRONG_NODE = "wrong_node"
    NOT_NODE_CERT = "not_node_cert"


@dataclass(frozen=True, slots=True)
class Token:
    """What travels in the ``METADATA_KEY`` header: ``v1.<ms>.<nonce>.<audience>.<mac>``.

    ``audience`` is the hex id of the node the call is for, empty when the
    caller does not know it yet (a MEET, a forwarded call).
    """

    timestamp_ms: int
    nonce: str
    audience: str
    mac: str

    def encode(self) -> str:
        """The header value."""
        return f"{VERSION}.{self.timestamp_ms}.{self.nonce}.{self.audience}.{self.mac}"

    @classmethod
    def parse(cls, text: str) -> Token | None:
        """The token in a header value, or None when it is not one."""
        parts = text.split(".")
        if len(parts) != 5 or parts[0] != VERSION or not parts[1].isdigit():
            return None
        return cls(int(parts[1]), parts[2], parts[3], parts[4])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(
    secret: bytes, method: str, body: bytes, timestamp_ms: int, nonce: str, audience: str = ""
) -> str:
    """The MAC over one call; every field is length-prefixed so none can bleed into another."""
    head = b"".join(
        b"%d:%s;" % (len(f), f)
        for f in (
            VERSION.encode(),
            method.encode(),
            b"%d" % timestamp_ms,
            nonce.encode(),
            audience.encode(),
        )
    )
    return _b64(hmac.digest(secret, head + body, "sha256"))


def verify(secrets: Sequence[bytes], method: str, body: bytes, token: Token) -> bool:
    """Whether any of ``secrets`` signed ``token`` over this call (constant-time compare)."""
    return any(
        hmac.compare_digest(
            sign(s, method, body, token.timestamp_ms, token.nonce, token.audience), token.mac
        )
        for s in secrets
    )


class ReplayGuard:
    """Accepts each nonce once, and only with a timestamp inside the window.

    Nonces are remembered until their timestamp leaves the window, so a
    replay is refused either as seen or as stale. When more than
    ``capacity`` are fresh, the oldest is forgotten and ``floor`` rises to
    its timestamp: nothing that old is accepted any more, which keeps the
    guarantee with bounded memory.
    """

    def __init__(self, window_ms: int = WINDOW_MS, capacity: int = NONCE_CAPACITY) -> None:
        self.window_ms = window_ms
        self.capacity = capacity
        self.floor = -1
        self._seen: set[str] = set()
        self._by_age: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, timestamp_ms: int, nonce: str, now_ms: int) -> Refusal | None:
        """Record the nonce and return None, or say why the call is refused."""
        by_age = self._by_age
        horizon = now_ms - self.window_ms
        while by_age and by_age[0][0] < horizon:
            self._seen.discard(heapq.heappop(by_age)[1])
        if abs(now_ms - timestamp_ms) > self.window_ms or timestamp_ms <= self.floor:
            return Refusal.STALE
        if nonce in self._seen:
            return Refusal.REPLAYED
        self._seen.add(nonce)
        heapq.heappush(by_age, (timestamp_ms, nonce))
        if len(by_age) > self.capacity:
            oldest, forgotten = heapq.heappop(by_age)
            self._seen.discard(forgotten)
            self.floor = max(self.floor, oldest)
        return None


def is_node_certificate(auth_context: Mapping[str, Iterable[bytes]]) -> bool:
    """Whether the peer's verified certificate carries the node URI SAN."""
    return any(uri == NODE_CERT_URI.encode() for uri in auth_context.get("peer_uri", ()))


class LogLimiter:
    """At most one line per key per period, telling how many were held back."""

    def __init__(
        self, period_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._period_s = period_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet; otherwise log now, mentioning the returned count held back."""
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._next[key] = now + self._period_s
        return self._held.pop(key, 0)


def wall_ms() -> int:
    """Wall-clock milliseconds: tokens are checked on other hosts, so no monotonic clock."""
    return time.time_ns() // 1_000_000


def _metadata_values(metadata: Iterable[Any], key: str) -> Iterator[str]:
    for item in metadata:
        if item[0] == key:
            value = item[1]
            yield value.decode() if isinstance(value, bytes) else str(value)


def _metadata_value(metadata: Iterable[Any], key: str) -> str | None:
    return next(_metadata_values(metadata, key), None)


class NodeAuth:
    """Proves and checks that a gRPC call comes from a cluster member."""

    def __init__(
        self,
        secrets: Callable[[], Sequence[bytes]] | None = None,
        node_certs: bool = False,
        node_id: bytes = b"",
        clock_ms: Callable[[], int] = wall_ms,
        guard: ReplayGuard | None = None,
        nonce: Callable[[], str] = lambda: _b64(random_source.token_bytes(NONCE_BYTES)),
        limiter: LogLimiter | None = None,
    ) -> None:
        # Called per use, so a reloaded secret file takes effect at once.
        self._secrets = secrets
        self.node_certs = node_certs
        self.node_id = node_id.hex()
        self._clock_ms = clock_ms
        self._guard = guard or ReplayGuard()
        self._nonce = nonce
        self._limiter = limiter or LogLimiter()
        # Refused calls by Refusal value: plain ints the metrics read when scraped.
        self.refused: dict[str, int] = {r.value: 0 for r in Refusal}

    @property
    def enabled(self) -> bool:
        """Whether calls are checked at all (a secret or node certificates are configured)."""
        return self._secrets is not None or self.node_certs

    @property
    def refused_total(self) -> int:
        """Calls refused since start, for every reason."""
        return sum(self.refused.values())

    # ---- the caller's side -------------------------------------------------------

    def call_metadata(
        self, method: str, body: bytes = b"", audience: bytes = b""
    ) -> tuple[tuple[str, str], ...]:
        """Metadata to attach to an outgoing node-to-node call (none without a secret).

        ``audience`` is the id of the node called, when known: the token is
        then refused by any other node.
        """
        if self._secrets is None:
            return ()
        return self._token(method, body, self._nonce(), audience.hex())

    def _token(
        self, method: str, body: bytes, nonce: str, audience: str
    ) -> tuple[tuple[str, str], ...]:
        assert self._secrets is not None
        ts = self._clock_ms()
        mac = sign(self._secrets()[0], method, body, ts, nonce, audience)
        return ((METADATA_KEY, Token(ts, nonce, audience, mac).encode()),)

    @property
    def signs(self) -> bool:
        """Whether calls and answers carry tokens (a cluster secret is configured)."""
        return self._secrets is not None

    def check_reply(
        self, sent: Iterable[Any], received: Iterable[Any], method: str, body: bytes
    ) -> Refusal | None:
        """None when an answer to our call ``sent`` comes from a member; otherwise why not.

        An answer's token reuses the nonce of the call it answers, so it
        cannot be replayed as the answer to any other call, and needs no
        nonce cache.
        """
        if self._secrets is None:
            return None
        asked = Token.parse(_metadata_value(sent, METADATA_KEY) or "")
        value = _metadata_value(received, METADATA_KEY)
        if value is None:
            return Refusal.MISSING
        token = Token.parse(value)
        if token is None or asked is None:
            return Refusal.MALFORMED
        if token.nonce != asked.nonce:
            return Refusal.REPLAYED
        if not verify(self._secrets(), method + REPLY, body, token):
            return Refusal.BAD_MAC
        if abs(self._clock_ms() - token.timestamp_ms) > self._guard.window_ms:
            return Refusal.STALE
        return None

    def is_member_reply(
        self, sent: Iterable[Any], received: Iterable[Any], method: str, body: bytes, peer: str
    ) -> bool:
        """Whether the answer to our call comes from a member; a refusal is counted and logged."""
        refusal = self.check_reply(sent, received, method, body)
        if refusal is None:
            return True
        self.note_refusal(refusal, method + REPLY, peer)
        return False

    # ---- the receiver's side -----------------------------------------------------

    def check(
        self,
        metadata: Iterable[Any],
        method: str,
        body: bytes,
        auth_context: Mapping[str, Iterable[bytes]],
    ) -> Refusal | None:
        """None when the call is a member's; otherwise why not (records its nonce if valid)."""
        if self.node_certs and not is_node_certificate(auth_context):
            return Refusal.NOT_NODE_CERT
        if self._secrets is None:
            return None
        # A call may carry more than one token, each signed over its own body
        # (a forwarded call: the forwarding node's, and one vouching for the
        # user it relays); the one signed over this body is the one checked.
        refusal = Refusal.MISSING
        for value in _metadata_values(metadata, METADATA_KEY):
            token = Token.parse(value)
            if token is None:
                refusal = Refusal.MALFORMED
            # The MAC first: an outsider's tokens never reach the nonce cache.
            elif not verify(self._secrets(), method, body, token):
                refusal = Refusal.BAD_MAC
            elif token.audience not in ("", self.node_id):
                return Refusal.WRONG_NODE
            else:
                return self._guard.admit(token.timestamp_ms, token.nonce, self._clock_ms())
        return refusal

    def is_member_call(
        self, context: grpc.aio.ServicerContext[Any, Any], method: str, body: bytes = b""
    ) -> bool:
        """Whether a received call is a member's; a refusal is counted and logged."""
        if not self.enabled:
            return True
        refusal = self.check(
            context.invocation_metadata() or (), method, body, context.auth_context()
        )
        if refusal is None:
            return True
        self.note_refusal(refusal, method, context.peer())
        return False

    def reply_metadata(
        self, context: grpc.aio.ServicerContext[Any, Any], method: str, body: bytes = b""
    ) -> tuple[tuple[str, str], ...]:
        """Metadata proving to a member's call that this answer, ``body``, is a member's."""
        if self._secrets is None:
            return ()
        asked = Token.parse(
            _metadata_value(context.invocation_metadata() or (), METADATA_KEY) or ""
        )
        if asked is None:
            return ()
        return self._token(method + REPLY, body, asked.nonce, "")

    def note_refusal(self, refusal: Refusal, method: str, peer: str) -> None:
        """Count a refused call and log it, at most once per period per reason."""
        self.refused[refusal.value] += 1
        held = self._limiter.allow(refusal.value)
        if held is not None:
            log.warning(
                "refused a %s call from %s: not a cluster member (%s)%s",
                method,
                peer,
                refusal.value,
                f"; {held} more refused for this reason since the last report" if held else "",
            )


def node_auth_for(secret_file: Path | None, node_certs: bool, node_id: bytes) -> NodeAuth:
    """The node's authenticator; SecretFileError when the secret file cannot be used."""
    secrets = SecretFile(secret_file).secrets if secret_file is not None else None
    return NodeAuth(secrets, node_certs, node_id)
