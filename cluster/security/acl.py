r"""Users and their permissions: the ACL file, its rules, and the checks made per operation.

The file format follows Redis's ACL files closely, one user per line, so
that an operator who knows ``ACL SETUSER`` can read it::

    # name     state secret(s)                       keys               permissions
    user app     on  #<sha256-hex>                    ~cache:*           +@read +@write
    user reader  on  #<sha256-hex>                    %R~*               +@read
    user ops     on  #<sha256-hex> cn:ops.example.com ~*                 +@all
    user default on  nopass                           %R~public:*        +@read

Rules are applied left to right, as Redis does:

- ``on`` / ``off``: the user may authenticate or not (``off`` is the default).
- ``#<64 hex digits>``: the SHA-256 of one of the user's tokens (several may
  be listed, which is how tokens are rotated). Plaintext ``>secret`` rules
  are refused: the file never holds a usable secret.
  ``clusterctl acl hash-token`` prints the rule for a token.
- ``nopass``: only for the user ``default``, which then serves calls that
  carry no credentials at all.
- ``cn:<name>`` / ``san:<name>``: a verified mTLS client certificate whose
  subject CN (or one of whose SANs: DNS name, URI, e-mail or IP) is
  ``<name>`` is this user.
- ``~<glob>``, ``%R~<glob>``, ``%W~<glob>``, ``%RW~<glob>``: keys the user may
  read and write, only read, only write; ``allkeys`` is ``~*`` and
  ``resetkeys`` forgets the patterns so far. Globs are Redis's: ``*``, ``?``,
  ``[a-z]``, ``[^a]`` and ``\\`` escapes.
- ``+@read``, ``+@write``, ``+@admin``, ``+@all`` (``allcommands``), their
  ``-@`` forms and ``nocommands``; single operations by name (``+get``,
  ``-mdelete``, ``+subscribe``). ``read`` covers the operations that change
  nothing, ``write`` those that do, ``admin`` every Admin RPC.

An operation that writes needs write access to each of its keys, one that
reads needs read access; ``incr`` needs both, since its reply is the value.

Everything here is pure: parsing builds immutable :class:`User` objects
whose key patterns are compiled once (literal prefixes and exact names take
C-speed ``startswith`` and set lookups; only true globs become one regular
expression), so the per-operation check is a set lookup for users allowed
every key, and a few comparisons per key otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slotcache.contract import OPS, Op

__all__ = [
    "ANONYMOUS",
    "CACHE_OPS",
    "SUBSCRIBE",
    "Acl",
    "AclError",
    "Credential",
    "Denial",
    "KeyMatcher",
    "User",
    "compile_glob",
    "hash_token",
    "load_acl",
    "parse_acl",
    "parse_authorization",
    "token_credential",
]

#: The name of the user that serves calls without credentials (with ``nopass``).
ANONYMOUS = "default"
#: A Subscribe stream is permitted like an operation of this name (category read).
SUBSCRIBE = "subscribe"
#: Every operation name a rule may grant, in the contract's order.
CACHE_OPS: tuple[str, ...] = (*OPS, SUBSCRIBE)
_READ_OPS = frozenset(name for name, op in OPS.items() if not op.writes) | {SUBSCRIBE}
_WRITE_OPS = frozenset(name for name, op in OPS.items() if op.writes)
# Writes whose reply carries the stored value: they also need read access.
_READS_BACK = frozenset({"incr"})
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.@:+-]{1,64}")


class AclError(ValueError):
    """The ACL text is not valid; the message names the line and the rule."""


def hash_token(token: str) -> str:
    """The rule that lets ``token`` authenticate: ``#`` and its SHA-256 in hex."""
    return "#" + _digest(token)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ---- key patterns --------------------------------------------------------------------

_GLOB_SPECIAL = frozenset(b"*?[\\")


def compile_glob(pattern: bytes) -> str:
    """A regular expression (for ``re.fullmatch`` with DOTALL) equal to Redis's glob ``pattern``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == ord("*"):
            out.append(".*")
        elif c == ord("?"):
            out.append(".")
        elif c == ord("\\") and i + 1 < n:
            i += 1
            out.append(_lit(pattern[i]))
        elif c == ord("["):
            i, cls = _char_class(pattern, i)
            out.append(cls)
        else:
            out.append(_lit(c))
        i += 1
    return "".join(out)


def _lit(c: int) -> str:
    return re.escape(chr(c))


def _char_class(pattern: bytes, start: int) -> tuple[int, str]:
    """``[...]`` from ``start``: the index of its ``]`` and the class; Redis's rules.

    Redis negates with ``^``, swaps reversed ranges, takes the byte after a
    ``-`` as a range's end even when it is ``]``, and lets an unclosed class
    run to the end of the pattern.
    """
    i, n = start + 1, len(pattern)
    negate = i < n and pattern[i] == ord("^")
    if negate:
        i += 1
    parts: list[str] = []
    while i < n and pattern[i] != ord("]"):
        c = pattern[i]
        if c == ord("\\") and i + 1 < n:
            i += 1
            parts.append(_lit(pattern[i]))
        elif i + 2 < n and pattern[i + 1] == ord("-"):
            lo, hi = sorted((c, pattern[i + 2]))
            parts.append(f"{_lit(lo)}-{_lit(hi)}")
            i += 2
        else:
            parts.append(_lit(c))
        i += 1
    if not parts:
        # ``[]`` matches nothing, ``[^]`` any byte, as in Redis.
        return i, "." if negate else "(?!)"
    return i, f"[{'^' if negate else ''}{''.join(parts)}]"


@dataclass(frozen=True, slots=True)
class KeyMatcher:
    """A set of key globs compiled for speed: all keys, exact names, prefixes, one regex."""

    every: bool = False
    exact: frozenset[bytes] = frozenset()
    prefixes: tuple[bytes, ...] = ()
    regex: re.Pattern[bytes] | None = None

    @classmethod
    def of(cls, patterns: Iterable[bytes]) -> KeyMatcher:
        """Compile ``patterns``: literal ones and ``literal*`` skip the regex engine."""
        exact: set[bytes] = set()
        prefixes: list[bytes] = []
        globs: list[str] = []
        for p in dict.fromkeys(patterns):
            if p == b"*":
                return cls(every=True)
            if not _GLOB_SPECIAL.intersection(p):
                exact.add(p)
            elif p.endswith(b"*") and not _GLOB_SPECIAL.intersection(p[:-1]):
                prefixes.append(p[:-1])
            else:
                globs.append(compile_glob(p))
        regex = None
        if globs:
            text = "|".join(f"(?:{g})" for g in globs)
            regex = re.compile(text.encode("latin-1"), re.DOTALL)
        return cls(False, frozenset(exact), tuple(prefixes), regex)

    def fast(self) -> Callable[[bytes], bool]:
        """:meth:`__call__` as the cheapest callable for these patterns (the hot path's)."""
        if self.every:
            return lambda key: True
        if self.regex is None and not self.exact:
            prefixes = self.prefixes
            return lambda key: key.startswith(prefixes)
        if self.regex is None and not self.prefixes:
            return self.exact.__contains__
        return self.__call__

    def __call__(self, key: bytes) -> bool:
        """Whether ``key`` matches any pattern."""
        if self.every or key in self.exact:
            return True
        if self.prefixes and key.startswith(self.prefixes):
            return True
        return self.regex is not None and self.regex.fullmatch(key) is not None


# ---- users ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an operation is refused: not permitted at all, or not on ``key``."""

    op: str
    key: bytes | None = None
    access: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """One user's permissions, compiled; built only by :func:`parse_acl`."""

    name: str
    enabled: bool
    secrets: frozenset[str]
    nopass: bool
    certificates: frozenset[str]
    ops: frozenset[str]
    admin: bool
    readable: KeyMatcher
    writable: KeyMatcher
    #: The rule as errors show it: the line without secrets and certificate names.
    rule: str
    #: Operations allowed on every key: they need no key check.
    free: frozenset[str] = field(default=frozenset())
    #: The per-op fast check, by operation: None when the operation is allowed on
    #: every key, else request -> permitted; absent when it is not permitted at all.
    #: A refusal's reason is then found by :meth:`check`.
    checks: Mapping[str, Callable[[Any], bool] | None] = field(default_factory=dict)

    @property
    def unrestricted(self) -> bool:
        """Every Cache operation on every key: a Pipeline message needs no per-op check."""
        return self.free >= _ALL_OPS

    def check(self, op: Op, keys: Sequence[bytes]) -> Denial | None:
        """None when the user may run ``op`` on ``keys``; otherwise why not."""
        name = op.field
        if name in self.free:
            return None
        if name not in self.ops:
            return Denial(name)
        if op.writes:
            writable = self.writable
            for key in keys:
                if not writable(key):
                    return Denial(name, key, "write")
            if name not in _READS_BACK:
                return None
        readable = self.readable
        for key in keys:
            if not readable(key):
                return Denial(name, key, "read")
        return None

    def may_subscribe(self, every_key: bool) -> Denial | None:
        """Subscribe: a read permission; watching whole slots also needs every key readable."""
        if SUBSCRIBE not in self.ops:
            return Denial(SUBSCRIBE)
        if every_key and not self.readable.every:
            return Denial(SUBSCRIBE, b"*", "read")
        return None


_ALL_OPS = frozenset(OPS)


def _needs(name: str) -> tuple[bool, bool]:
    """(read, write) access an operation needs on each of its keys."""
    op = OPS.get(name)
    if op is None:  # subscribe
        return True, False
    return (not op.writes or name in _READS_BACK), op.writes


class _UserBuilder:
    """Applies one line's rules left to right."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.enabled = False
        self.secrets: set[str] = set()
        self.nopass = False
        self.certificates: set[str] = set()
        self.ops: set[str] = set()
        self.admin = False
        self.read: list[bytes] = []
        self.write: list[bytes] = []
        self.shown: list[str] = []

    def apply(self, rule: str) -> None:
        shown = rule
        if rule in ("on", "off"):
            self.enabled = rule == "on"
        elif rule.startswith("#"):
            digest = rule[1:].lower()
            if not _HEX_DIGEST.fullmatch(digest):
                raise AclError("a #secret rule needs 64 hex digits (a SHA-256)")
            self.secrets.add(digest)
            shown = ""
        elif rule.startswith(">") or rule.startswith("<"):
            raise AclError(
                "plaintext passwords are not accepted; "
                "store the token's hash (clusterctl acl hash-token) as #<sha256>"
            )
        elif rule == "nopass":
            if self.name != ANONYMOUS:
                raise AclError(f"nopass is only for the user {ANONYMOUS!r}")
            self.nopass = True
        elif rule.startswith(("cn:", "san:")):
            if not rule.partition(":")[2]:
                raise AclError("a certificate rule needs a name after the colon")
            self.certificates.add(rule)
            shown = ""
        elif rule == "allkeys":
            self.read.append(b"*")
            self.write.append(b"*")
        elif rule == "resetkeys":
            self.read.clear()
            self.write.clear()
        elif rule.startswith(("~", "%")):
            self._keys(rule)
        elif rule in ("allcommands", "nocommands"):
            self._grant(rule == "allcommands", "@all")
        elif rule[:1] in "+-" and len(rule) > 1:
            self._grant(rule[0] == "+", rule[1:].lower())
        else:
            raise AclError(f"unknown rule {rule!r}")
        if shown:
            self.shown.append(shown)

    def _keys(self, rule: str) -> None:
        access, tilde, glob = rule.partition("~")
        if not tilde or not glob:
            raise AclError(f"bad key pattern {rule!r}: expected ~glob, %R~glob or %W~glob")
        mode = access[1:].upper() if access.startswith("%") else "RW"
        if access and (not access.startswith("%") or not mode or set(mode) - {"R", "W"}):
            raise AclError(f"bad key pattern {rule!r}: the access before ~ is %R, %W or %RW")
        pattern = glob.encode()
        if "R" in mode:
            self.read.append(pattern)
        if "W" in mode:
            self.write.append(pattern)

    def _grant(self, allow: bool, what: str) -> None:
        categories = {
            "@all": (set(CACHE_OPS), True),
            "@read": (set(_READ_OPS), False),
            "@write": (set(_WRITE_OPS), False),
            "@admin": (set(), True),
        }
        if what in categories:
            ops, admin = categories[what]
        elif what in CACHE_OPS:
            ops, admin = {what}, False
        else:
            known = ", ".join((*categories, *CACHE_OPS))
            raise AclError(f"unknown permission {what!r}; known: {known}")
        if allow:
            self.ops |= ops
            self.admin = self.admin or admin
        else:
            self.ops -= ops
            self.admin = self.admin and not admin

    def build(self) -> User:
        readable, writable = KeyMatcher.of(self.read), KeyMatcher.of(self.write)
        free = set()
        checks: dict[str, Callable[[Any], bool] | None] = {}
        for name in self.ops:
            read, write = _needs(name)
            if (not read or readable.every) and (not write or writable.every):
                free.add(name)
                checks[name] = None
            elif name in OPS:
                checks[name] = _fast_check(OPS[name], readable, writable)
        return User(
            name=self.name,
            enabled=self.enabled,
            secrets=frozenset(self.secrets),
            nopass=self.nopass,
            certificates=frozenset(self.certificates),
            ops=frozenset(self.ops),
            admin=self.admin,
            readable=readable,
            writable=writable,
            rule=" ".join(self.shown) or "(no permissions)",
            free=frozenset(free) - {SUBSCRIBE},
            checks=checks,
        )


def _fast_check(op: Op, readable: KeyMatcher, writable: KeyMatcher) -> Callable[[Any], bool]:
    """Whether a request of ``op`` is permitted: the hot path's check.

    A single-key operation's key is matched by one call (for prefix
    patterns, one ``startswith``); the others go through every key.
    """
    read, write = _needs(op.field)
    if op.multi is None and read != write:
        matcher = writable if write else readable
        if matcher.regex is None and not matcher.exact:
            prefixes = matcher.prefixes
            return lambda request: request.key.startswith(prefixes)
        matches = matcher.fast()
        return lambda request: matches(request.key)
    need = [m.fast() for m, wanted in ((readable, read), (writable, write)) if wanted]
    keys = op.keys
    return lambda request: all(m(k) for k in keys(request) for m in need)


# ---- credentials ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """What a caller presented: a user name (empty for a bearer token) and its secret's hash.

    Only the hash is kept, so a credential held by an open stream (to
    authenticate it again after a reload) is no secret.
    """

    user: str
    digest: str


def token_credential(user: str, token: str) -> Credential:
    """The credential of ``token`` for ``user`` (empty: whoever holds it), as the ACL stores it."""
    return Credential(user, _digest(token))


def parse_authorization(value: str) -> Credential | None:
    """``Bearer <token>`` or ``Basic base64(user:password)``; None when it is neither."""
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if not rest:
        return None
    scheme = scheme.lower()
    if scheme == "bearer":
        return token_credential("", rest)
    if scheme == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        if not colon or not user:
            return None
        return token_credential(user, password)
    return None


# ---- the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Acl:
    """Every user of one ACL file, indexed the ways calls find them."""

    users: Mapping[str, User]
    by_secret: Mapping[str, User]
    by_certificate: Mapping[str, User]

    @property
    def anonymous(self) -> User | None:
        """The user of calls without credentials: ``default`` when it is on and ``nopass``."""
        user = self.users.get(ANONYMOUS)
        return user if user is not None and user.enabled and user.nopass else None

    def authenticate(self, credential: Credential) -> User | None:
        """The user the credential proves, or None (unknown, wrong secret or disabled alike)."""
        if credential.user:
            user = self.users.get(credential.user)
            if user is None or credential.digest not in user.secrets:
                return None
        else:
            user = self.by_secret.get(credential.digest)
        return user if user is not None and user.enabled else None

    def for_certificate(self, names: Iterable[str]) -> User | None:
        """The one enabled user a certificate's ``cn:``/``san:`` names map to (None if not one)."""
        found = {u.name: u for n in names if (u := self.by_certificate.get(n)) is not None}
        if len(found) != 1:
            return None
        (user,) = found.values()
        return user if user.enabled else None


def parse_acl(text: str, source: str = "ACL file") -> Acl:
    """Parse ACL text; AclError names ``source``, the line and what is wrong with it."""
    users: dict[str, User] = {}
    by_secret: dict[str, User] = {}
    by_certificate: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{source}:{number}"
        if words[0] != "user" or len(words) < 2:
            raise AclError(f"{where}: expected 'user <name> <rules...>'")
        name = words[1]
        if not _NAME.fullmatch(name):
            raise AclError(f"{where}: {name!r} is not a user name (letters, digits, _.@:+-)")
        if name in users:
            raise AclError(f"{where}: user {name!r} is defined twice")
        builder = _UserBuilder(name)
        for rule in words[2:]:
            try:
                builder.apply(rule)
            except AclError as exc:
                raise AclError(f"{where}: user {name!r}: {exc}") from None
        user = users[name] = builder.build()
        for digest in user.secrets:
            if digest in by_secret:
                other = by_secret[digest].name
                raise AclError(f"{where}: user {name!r} shares a token with {other!r}")
            by_secret[digest] = user
        for cert in user.certificates:
            if cert in by_certificate:
                other = by_certificate[cert].name
                raise AclError(f"{where}: user {name!r} shares {cert!r} with {other!r}")
            by_certificate[cert] = user
    return Acl(users, by_secret, by_certificate)


def load_acl(path: Path) -> Acl:
    """Read and parse an ACL file; AclError (with the path) for an unreadable or bad one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AclError(f"cannot read ACL file {path}: {exc}") from None
    return parse_acl(text, str(path))
