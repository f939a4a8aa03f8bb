"""Who is calling, and may they: the node's side of users, permissions and protected mode.

The design rule is "authenticate a connection or a stream once, check
roles cheaply per operation" (no per-request interceptors). So:

- a unary Cache call is authenticated once (:meth:`Access.unary`), a
  Pipeline or Subscribe stream once when it opens (:meth:`Access.stream`);
  a stream's :class:`Caller` is looked up again only after a reload (one
  integer comparison per message otherwise), so a revoked token ends it;
- each operation's keys are checked against the user's precompiled
  patterns (:meth:`~slotcache_server.security.acl.User.check`); a user
  allowed everything skips even that;
- Admin RPCs need the admin permission (:func:`guard_admin` wraps the
  servicer's methods once, at registration).

Credentials are ``authorization: Bearer <token>`` or ``Basic
base64(user:password)`` metadata, or a verified client certificate whose
CN or SAN an ACL rule names, or nothing for the ``default`` user.

**Forwarded calls.** A node that forwards a call passes the caller's own
``authorization`` header on, and the owner authenticates it again, which
needs no trust between nodes. A caller known by other means (a client
certificate) is named in ``slotcache-acl-user`` instead, with the node
authentication token of the forwarding node bound to that name; the owner
believes the name only when node authentication is configured (a cluster
secret or node certificates) and the call is a member's. Without it the
header is ignored: otherwise anyone could claim to be any user.

**Protected mode** (with no ACL file): only loopback clients, clients that
presented a verified certificate (mutual TLS), and calls proven to come
from a cluster member are served; others get a message saying how to open
the node. It is decided per call rather than from the TLS settings, so a
plaintext port served beside a mutual-TLS port during a migration to TLS
stays protected.

Refusals say nothing that helps a guesser: every failed authentication is
the same UNAUTHENTICATED message, tokens are never echoed, logged or
counted by value. Each refusal goes to the ACL log.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import grpc

from slotcache.contract import Op, Reason
from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb

from ..executor import CommandError
from .acl import Acl, AclError, Credential, Denial, User, load_acl, parse_authorization
from .acl_log import AclLog
from .acl_log import Reason as LogReason
from .member_rpc import method_path
from .tls import peer_certificate

log = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

#: Request metadata carrying the caller's credentials.
AUTHORIZATION_KEY = "authorization"
#: Request metadata of a forwarded call: the user a member node authenticated.
FORWARDED_USER_KEY = "slotcache-acl-user"
CACHE_SERVICE = pb.DESCRIPTOR.services_by_name["Cache"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
NOT_AUTHENTICATED = "authentication failed: invalid credentials, or the user is disabled"
AUTH_REQUIRED = (
    "authentication required: this node has users; send 'authorization: Bearer <token>' "
    "metadata (clusterctl --token, SDK token=)"
)
PROTECTED = (
    "this node is in protected mode: no users are configured, so only loopback clients "
    "are served. To allow others, give the node users (--acl-file, see docs/security.md), "
    "or require client certificates, or start it with --protected-mode no"
)
_REPORT_EVERY_S = 1.0


def cache_method(rpc: str) -> str:
    """A Cache method's full path, as node authentication binds a forwarded call to it."""
    return method_path(CACHE_SERVICE, rpc)


# Admin RPCs that cluster members call on each other, proven by node authentication.
MEMBER_ADMIN_RPCS = frozenset({"Failover"})


class MemberCheck(Protocol):
    """What this module needs of node authentication (``NodeAuth``)."""

    @property
    def enabled(self) -> bool:
        """Whether calls are checked at all (a cluster secret or node certificates)."""
        ...

    def call_metadata(self, method: str, body: bytes = b"") -> tuple[tuple[str, str], ...]:
        """Metadata proving an outgoing call is this member's."""
        ...

    def is_member_call(self, context: Context, method: str, body: bytes = b"") -> bool:
        """Whether a received call is a member's."""
        ...


# ---- pure helpers -------------------------------------------------------------------


def is_loopback(peer: str) -> bool:
    """Whether ``context.peer()`` (``ipv4:h:p``, ``ipv6:[h]:p``, ``unix:...``) is this host."""
    if peer.startswith("ipv4:127.") or peer.startswith("ipv6:[::1]:") or peer.startswith("unix:"):
        return True
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return False
    host = rest.rpartition(":")[0].strip("[]")
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def certificate_names(context: Context) -> tuple[str, ...]:
    """The verified client certificate's names as ACL rules spell them: ``cn:x``, ``san:y``.

    Empty without a verified certificate (see :func:`~.tls.peer_certificate`).
    """
    cert = peer_certificate(context)
    if cert is None:
        return ()
    cn = (f"cn:{cert.common_name}",) if cert.common_name else ()
    return (*cn, *(f"san:{name}" for name in cert.sans))


def denied(user: User, denial: Denial) -> CommandError:
    """PERMISSION_DENIED naming the operation, the key and the user's own rule."""
    if denial.key is None:
        what = f"may not run {denial.op}"
    else:
        key = denial.key[:64].decode("utf-8", "backslashreplace")
        what = f"may not {denial.access} key {key!r} with {denial.op}"
    return CommandError(
        grpc.StatusCode.PERMISSION_DENIED,
        f"NOPERM user {user.name!r} {what}; its rule: {user.rule}",
        Reason.NO_PERMISSION,
        {"user": user.name, "op": denial.op},
    )


def unauthenticated(message: str) -> CommandError:
    """UNAUTHENTICATED with a fixed message: nothing about which part was wrong."""
    return CommandError(grpc.StatusCode.UNAUTHENTICATED, message)


# ---- callers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated call or stream: who, how they proved it, and what to forward.

    ``proof`` is a :class:`Credential` (a token's hash, never the token),
    the certificate's names, or the user name a member vouched for; with it
    an open stream is authenticated again after a reload.
    """

    user: User
    proof: Credential | tuple[str, ...] | str | None
    generation: int
    peer: str
    #: The caller's own ``authorization`` value, passed on when the call is forwarded.
    authorization: str = ""

    def __repr__(self) -> str:  # never show the header
        return f"Caller({self.user.name!r})"


class Access:
    """The node's users (reloadable), protected mode, and the ACL log."""

    def __init__(
        self,
        acl_file: Path | None,
        protected_mode: bool,
        node_auth: MemberCheck | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.acl_file = acl_file
        self.node_auth = node_auth
        self.acl: Acl | None = None
        #: Bumped by each successful reload; open streams compare it per message.
        self.generation = 0
        self.protected = protected_mode and acl_file is None
        #: Whether calls are checked at all; False leaves the request path untouched.
        self.active = acl_file is not None or self.protected
        self.log = AclLog()
        self._clock_ms = clock_ms
        self._next_report = 0.0
        self.reloads = 0
        self.reload_failures = 0

    # ---- the users -------------------------------------------------------------------

    def load(self) -> None:
        """Read the ACL file at start; AclError if it is bad (the node must not start)."""
        if self.acl_file is not None:
            self.acl = load_acl(self.acl_file)
            log.info("loaded %d users from %s", len(self.acl.users), self.acl_file)

    def reload(self) -> tuple[bool, str]:
        """Read the ACL file again; a bad file keeps the users in force. (ok, message)."""
        if self.acl_file is None:
            return False, "this node has no ACL file (start it with --acl-file)"
        try:
            acl = load_acl(self.acl_file)
        except AclError as exc:
            self.reload_failures += 1
            log.error("ACL reload failed, the previous users stay in force: %s", exc)
            return False, f"{exc}; the previous users stay in force"
        self.acl = acl
        self.generation += 1
        self.reloads += 1
        message = f"loaded {len(acl.users)} users from {self.acl_file}"
        log.info("ACL reloaded: %s", message)
        return True, message

    def counters(self) -> dict[str, int]:
        """Plain counts for the Info RPC: refusals by reason, reloads, users."""
        out = {f"acl.refused.{reason}": n for reason, n in self.log.totals.items()}
        out["acl.reloads"] = self.reloads
        out["acl.reload_failures"] = self.reload_failures
        out["acl.users"] = len(self.acl.users) if self.acl is not None else 0
        return out

    # ---- authentication --------------------------------------------------------------

    def caller(self, context: Context, method: str) -> Caller | None:
        """Authenticate a call or a stream once; None when nothing needs checking.

        Raises CommandError (UNAUTHENTICATED) for a caller that proves nobody,
        and in protected mode for a client that is not on this host.
        """
        peer = context.peer()
        acl = self.acl
        if acl is None:
            if self.protected and not is_loopback(peer) and not self._vouched_for(context, method):
                self._note(LogReason.PROTECTED, "", peer, _rpc(method), None)
                raise CommandError(grpc.StatusCode.PERMISSION_DENIED, PROTECTED)
            return None
        authorization, vouched = "", None
        for key, value in context.invocation_metadata() or ():
            if key == AUTHORIZATION_KEY:
                authorization = str(value)
            elif key == FORWARDED_USER_KEY:
                vouched = str(value)
        proof: Credential | tuple[str, ...] | str | None
        if authorization:
            credential = parse_authorization(authorization)
            user = acl.authenticate(credential) if credential is not None else None
            claimed = credential.user if credential is not None else ""
            proof = credential
        elif vouched is not None and self._member(context, method, vouched):
            user = acl.users.get(vouched)
            user = user if user is not None and user.enabled else None
            claimed, proof = vouched, vouched
        else:
            names = certificate_names(context)
            user = acl.for_certificate(names) if names else acl.anonymous
            claimed, proof = "", names or None
        if user is None:
            self._note(LogReason.AUTH, claimed, peer, _rpc(method), None)
            raise unauthenticated(NOT_AUTHENTICATED if authorization or proof else AUTH_REQUIRED)
        return Caller(user, proof, self.generation, peer, authorization)

    def current(self, caller: Caller) -> Caller:
        """The stream's caller under the users now in force (a reload may revoke it)."""
        if caller.generation == self.generation:
            return caller
        proof = caller.proof
        user = self._user_for(proof)
        if user is None:
            self._note(LogReason.AUTH, caller.user.name, caller.peer, "stream", None)
            raise unauthenticated(NOT_AUTHENTICATED)
        return Caller(user, proof, self.generation, caller.peer, caller.authorization)

    def _user_for(self, proof: Credential | tuple[str, ...] | str | None) -> User | None:
        """The enabled user a proof names under the users now in force."""
        acl = self.acl
        assert acl is not None
        if isinstance(proof, Credential):
            return acl.authenticate(proof)
        if isinstance(proof, tuple):
            return acl.for_certificate(proof)
        if isinstance(proof, str):
            user = acl.users.get(proof)
            return user if user is not None and user.enabled else None
        return acl.anonymous

    # ---- connections of other protocols (RESP) ----------------------------------------

    def login(self, proof: Credential | tuple[str, ...] | None, peer: str) -> Caller | None:
        """A connection's caller for a token, a verified certificate's names, or nothing.

        None when the proof names no enabled user; the caller decides whether
        that is a refusal to log (a failed AUTH) or just a connection that
        has not authenticated yet.
        """
        user = self._user_for(proof)
        return None if user is None else Caller(user, proof, self.generation, peer)

    def admits(self, peer: str, names: tuple[str, ...], what: str) -> bool:
        """Protected mode for a connection: loopback or a verified certificate; logs refusals."""
        if not self.protected or is_loopback(peer) or names:
            return True
        self._note(LogReason.PROTECTED, "", peer, what, None)
        return False

    def unauthenticated(self, peer: str, what: str, claimed: str = "") -> None:
        """Log a connection's failed authentication, or its command before authenticating."""
        self._note(LogReason.AUTH, claimed, peer, what, None)

    def _vouched_for(self, context: Context, method: str) -> bool:
        """Protected mode's exceptions: a verified client certificate, or a member's call."""
        return bool(certificate_names(context)) or self._member(context, method)

    def _member(self, context: Context, method: str, vouched: str | None = None) -> bool:
        node_auth = self.node_auth
        if node_auth is None or not node_auth.enabled:
            return False
        return node_auth.is_member_call(context, method, _vouch_body(vouched))

    # ---- permissions -----------------------------------------------------------------

    def unary(self, context: Context, op: Op, request: Any) -> Caller | None:
        """Authenticate a unary Cache call and check its operation on its keys."""
        caller = self.caller(context, cache_method(op.rpc))
        if caller is not None and op.field not in caller.user.free:
            denial = caller.user.check(op, op.keys(request))
            if denial is not None:
                raise self.refuse(caller, denial)
        return caller

    def refuse(self, caller: Caller, denial: Denial) -> CommandError:
        """Log a denial and return its error."""
        reason = LogReason.COMMAND if denial.key is None else LogReason.KEY
        self._note(reason, caller.user.name, caller.peer, denial.op, denial.key)
        return denied(caller.user, denial)

    @staticmethod
    def permits(caller: Caller, spec: Op, request: Any) -> bool:
        """The per-op fast check: a set lookup, and a key match for a narrowed user.

        The Cache service inlines this on its hottest path.
        """
        permitted = caller.user.checks.get(spec.field, not_permitted)
        return permitted is None or permitted(request)

    def refused(self, caller: Caller, spec: Op, request: Any, op_id: int) -> pb.OperationResult:
        """The NOPERM result of an operation :meth:`permits` refused, logged with its reason."""
        denial = caller.user.check(spec, spec.keys(request))
        assert denial is not None, "refused() is only asked about refused operations"
        return pb.OperationResult(id=op_id, error=self.refuse(caller, denial).to_proto())

    def subscribe(self, context: Context, request: pb.SubscribeRequest) -> None:
        """Subscribe needs the subscribe permission; watching slots, every key readable."""
        caller = self.caller(context, cache_method("Subscribe"))
        if caller is None:
            return
        every_key = request.mode == pb.TRACKING_MODE_BROADCAST
        denial = caller.user.may_subscribe(every_key)
        if denial is not None:
            raise self.refuse(caller, denial)

    def admin(self, context: Context, rpc: str) -> None:
        """Every Admin RPC needs the admin permission once there are users.

        Except the one a member itself calls: a primary shutting down asks
        its replica to take over (``Failover``) with node authentication and
        no user, since a node holds no user's token. Without that the
        handoff on SIGTERM would be refused wherever there are users.
        """
        method = method_path(ADMIN_SERVICE, rpc)
        if rpc in MEMBER_ADMIN_RPCS and self._member(context, method):
            return
        caller = self.caller(context, method)
        if caller is not None and not caller.user.admin:
            raise self.refuse(caller, Denial(rpc))

    # ---- forwarding ------------------------------------------------------------------

    def forwarding(self, caller: Caller | None, rpc: str) -> tuple[tuple[str, str], ...]:
        """Metadata that carries the caller's identity to the owner of a forwarded call."""
        if caller is None:
            return ()
        if caller.authorization:
            return ((AUTHORIZATION_KEY, caller.authorization),)
        if caller.proof is None:
            return ()  # the default user: the owner needs nothing to apply it
        # A certificate's user, or a token proven without a header (RESP AUTH, of which
        # only the hash is kept): a member vouches for the name.
        node_auth = self.node_auth
        if node_auth is None or not node_auth.enabled:
            return ()  # cannot vouch: the owner refuses, rather than trusting anyone
        name = caller.user.name
        proof = node_auth.call_metadata(cache_method(rpc), _vouch_body(name))
        return ((FORWARDED_USER_KEY, name), *proof)

    # ---- the log ---------------------------------------------------------------------

    def _note(self, reason: LogReason, user: str, peer: str, op: str, key: bytes | None) -> None:
        fresh = self.log.add(reason, user, peer, op, key, self._clock_ms())
        now = time.monotonic()
        if fresh and now >= self._next_report:
            self._next_report = now + _REPORT_EVERY_S
            log.warning(
                "refused %s from %s (user %r, %s): see clusterctl acl log",
                op,
                peer,
                user,
                reason.value,
            )


def not_permitted(request: Any) -> bool:
    """The fast check of an operation the user may not run at all."""
    return False


def _rpc(method: str) -> str:
    """``/slotcache.v1.Cache/Get`` → ``Get``, as the ACL log names what was refused."""
    return method.rpartition("/")[2]


def _vouch_body(name: str | None) -> bytes:
    """What node authentication signs for a forwarded call: the user it names, if any."""
    return b"" if name is None else f"{FORWARDED_USER_KEY}:{name}".encode()
