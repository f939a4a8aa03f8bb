"""Who a RESP connection is, and whether it may run a command: the one place that decides.

Every connection gets its identity here (at connect, AUTH and HELLO ...
AUTH) and every command is checked here before it runs. The users,
their hashed tokens, their compiled key checks, protected mode and the ACL
log are the gRPC side's (:class:`~slotcache_server.security.access.Access`):
this module only speaks Redis's words for their answers.

Without users the node behaves as a Redis server with no password set:
the ``default`` user may run everything, ``AUTH <password>`` is refused as
Redis refuses it, and ``AUTH default <anything>`` succeeds.

With users (``--acl-file``), a connection starts as the ``default`` user
when that user is ``on nopass``, as the user its verified client
certificate names, or unauthenticated; an unauthenticated connection may
only run AUTH, HELLO ... AUTH and QUIT (``-NOAUTH``). Key commands are
checked per key as the gRPC operation they run; connection, COMMAND, INFO, DBSIZE and
CLUSTER introspection need an authenticated user; CLIENT LIST (it shows
every client's address and user) needs the admin permission; CLIENT
TRACKING needs the subscribe permission. No RESP command changes the
cluster's state, so none needs more.

After an ACL reload a connection's user is looked up again at its next
command, by the hash of the token it gave: new rules apply at once, and a
connection whose token or user is gone is unauthenticated again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slotcache.contract import Op

from ..executor import CommandError
from ..security.access import PROTECTED, Access, Caller
from ..security.acl import ANONYMOUS, Denial, token_credential
from .errors import RespError
from .table import CommandInfo

DEFAULT_USER = ANONYMOUS
NO_PASSWORD = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOAUTH = "NOAUTH Authentication required."
HELLO_NOAUTH = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
DENIED = "DENIED " + PROTECTED
_UNAUTHENTICATED = "UNAUTHENTICATED"
_DENIED_STATUS = "PERMISSION_DENIED"
# Commands an unauthenticated connection may run (Redis's no-auth ones).
_NO_AUTH = frozenset({"auth", "hello", "quit"})


@dataclass(slots=True)
class Identity:
    """The user a connection acts as; ``caller`` is None while it has not authenticated.

    ``caller`` is replaced after an ACL reload (see :meth:`Gate.check`).
    """

    user: str = DEFAULT_USER
    caller: Caller | None = None
    #: The client's address, as the ACL log shows it.
    peer: str = ""


UNAUTHENTICATED = "(unauthenticated)"


def noperm(user: str, command: str, denial: Denial) -> RespError:
    """Redis's NOPERM for a command the user may not run, or a key it may not touch."""
    if denial.key is None:
        text = f"NOPERM User {user} has no permissions to run the '{command}' command"
    else:
        text = f"NOPERM User {user} has no permissions to access one of the keys used as arguments"
    return RespError(text, _DENIED_STATUS)


class Gate:
    """Authenticates connections and authorises their commands."""

    def __init__(self, access: Access | None = None) -> None:
        self.access = access
        #: Whether commands are checked at all; False skips :meth:`check` on the hot path.
        self.enforcing = access is not None and access.acl_file is not None

    def initial(self, peer: str = "", names: tuple[str, ...] = ()) -> Identity:
        """The identity of a new (or RESET) connection from ``peer`` with certificate ``names``.

        Raises RespError (DENIED) when protected mode refuses the peer.
        """
        access = self.access
        if access is None:
            return Identity(peer=peer)
        if access.acl is None:
            if not access.admits(peer, names, "resp"):
                raise RespError(DENIED, _DENIED_STATUS)
            return Identity(peer=peer)
        caller = access.login(names or None, peer)
        if caller is None:
            return Identity(UNAUTHENTICATED, None, peer)
        return Identity(caller.user.name, caller, peer)

    def authenticate(self, user: str | None, password: bytes, peer: str = "") -> Identity:
        """The identity ``user`` (None: AUTH with a password alone) proves with ``password``."""
        access = self.access
        if access is None or access.acl is None:
            if user is None:
                raise RespError(NO_PASSWORD, _UNAUTHENTICATED)
            if user != DEFAULT_USER:
                raise RespError(WRONGPASS, _UNAUTHENTICATED)
            return Identity(peer=peer)
        acl = access.acl
        if user == DEFAULT_USER and DEFAULT_USER not in acl.users:
            # Clients send AUTH default <password> for AUTH <password>: the token names its user.
            user = None
        # A nopass default user takes any password, as in Redis.
        nopass = user == DEFAULT_USER and acl.anonymous is not None
        token = password.decode("utf-8", "replace")
        proof = None if nopass else token_credential(user or "", token)
        caller = access.login(proof, peer)
        if caller is None:
            access.unauthenticated(peer, "auth", user or "")
            raise RespError(WRONGPASS, _UNAUTHENTICATED)
        return Identity(caller.user.name, caller, peer)

    def hello(self, identity: Identity) -> None:
        """HELLO without AUTH, as Redis: only for a connection that has authenticated."""
        if self.enforcing and identity.caller is None:
            raise RespError(HELLO_NOAUTH, _UNAUTHENTICATED)

    def unrestricted(self, identity: Identity) -> bool:
        """Whether every key command is allowed on every key (the short way needs no check)."""
        if not self.enforcing:
            return True
        caller = identity.caller
        access = self.access
        assert access is not None
        return (
            caller is not None
            and caller.generation == access.generation
            and caller.user.unrestricted
        )

    def check(
        self, identity: Identity, command: CommandInfo, op: Op | None, keys: Sequence[bytes]
    ) -> None:
        """Refuse with NOAUTH or NOPERM when ``identity`` may not run ``command`` on ``keys``.

        ``op`` is the gRPC operation a key command runs; None for the others.
        """
        if command.name in _NO_AUTH:
            return
        caller = self._current(identity)
        if op is None:
            return
        denial = caller.user.check(op, keys)
        if denial is not None:
            self._refuse(caller, command.name, denial)

    def admin(self, identity: Identity, command: str) -> None:
        """A command that needs the admin permission (``client|list``)."""
        if not self.enforcing:
            return
        caller = self._current(identity)
        if not caller.user.admin:
            self._refuse(caller, command, Denial(command))

    def subscribe(self, identity: Identity, every_key: bool) -> None:
        """CLIENT TRACKING: the subscribe permission, and every key readable for BCAST."""
        if not self.enforcing:
            return
        caller = self._current(identity)
        denial = caller.user.may_subscribe(every_key)
        if denial is not None:
            self._refuse(caller, "client|tracking", denial)

    def _current(self, identity: Identity) -> Caller:
        """The connection's caller under the users now in force; NOAUTH without one."""
        caller = identity.caller
        access = self.access
        assert access is not None
        if caller is None:
            access.unauthenticated(identity.peer, "resp")
            raise RespError(NOAUTH, _UNAUTHENTICATED)
        if caller.generation != access.generation:
            try:
                caller = access.current(caller)
            except CommandError:
                identity.user, identity.caller = UNAUTHENTICATED, None
                raise RespError(NOAUTH, _UNAUTHENTICATED) from None
            identity.user, identity.caller = caller.user.name, caller
        return caller

    def _refuse(self, caller: Caller, command: str, denial: Denial) -> None:
        assert self.access is not None
        self.access.refuse(caller, denial)  # logged in the ACL log, as gRPC's refusals
        raise noperm(caller.user.name, command, denial)
