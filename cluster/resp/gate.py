"""Who a RESP connection is, and whether it may run a command: the one place that decides.

Every connection gets its identity here (at connect, AUTH and HELLO ...
AUTH) and every command is checked here before it runs, so that users and
permissions plug in by changing this module alone. Until users exist the
node behaves as a Redis server with no password set: the ``default`` user
may run everything, ``AUTH <password>`` is refused as Redis refuses it, and
``AUTH default <anything>`` succeeds because that user has no password.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RespError
from .table import CommandInfo

DEFAULT_USER = "default"


@dataclass(frozen=True, slots=True)
class Identity:
    """The user a connection acts as."""

    user: str = DEFAULT_USER


ANONYMOUS = Identity()
NO_PASSWORD = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)


class Gate:
    """Authenticates connections and authorises their commands."""

    #: Whether commands are checked at all; False skips :meth:`check` on the hot path.
    enforcing = False

    def initial(self) -> Identity:
        """The identity of a connection that has not authenticated."""
        return ANONYMOUS

    def authenticate(self, user: str | None, password: bytes) -> Identity:
        """The identity ``user`` (None: AUTH with a password alone) proves with ``password``."""
        if user is None:
            raise RespError(NO_PASSWORD, "UNAUTHENTICATED")
        if user != DEFAULT_USER:
            raise RespError(
                "WRONGPASS invalid username-password pair or user is disabled.", "UNAUTHENTICATED"
            )
        return ANONYMOUS

    def check(self, identity: Identity, command: CommandInfo, keys: list[bytes]) -> None:
        """Refuse with NOPERM when ``identity`` may not run ``command`` on ``keys``."""
