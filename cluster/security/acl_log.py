"""The ACL log: recent refusals, grouped, bounded, as Redis's ``ACL LOG`` keeps them.

A denial is grouped with an earlier one of the same reason, user, peer host,
operation and key seen less than a minute before, so a client retrying the
same forbidden call in a loop fills one entry (its count grows) instead of
the whole log. The log keeps the most recently seen entries only, so a
flood of distinct refusals costs bounded memory. Nothing secret enters it:
the user is the name a caller claimed or was authenticated as, never a
token, and keys are cut to a short prefix.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

#: Entries kept, as Redis's ``acllog-max-len`` default.
DEFAULT_MAX_ENTRIES = 128
#: Denials this close to an entry's last one join it.
GROUP_MS = 60_000
#: Keys are shown up to this many bytes.
KEY_PREFIX_BYTES = 64


class Reason(StrEnum):
    """Why a call or an operation was refused."""

    #: No credentials where some are required, or credentials that prove nobody.
    AUTH = "auth"
    #: An authenticated user lacks the permission for the operation.
    COMMAND = "command"
    #: The user may run the operation, but not on this key.
    KEY = "key"
    #: Protected mode refused a client that is not on loopback.
    PROTECTED = "protected"


@dataclass(slots=True)
class Entry:
    """One group of identical refusals; the fields are the ``AclLogEntry`` message's."""

    reason: Reason
    user: str
    peer: str
    op: str
    key: bytes
    count: int
    first_ms: int
    last_ms: int
    #: Increases with each entry created, so a client can tell entries apart.
    id: int


def peer_host(peer: str) -> str:
    """``ipv4:10.0.0.5:51234`` → ``ipv4:10.0.0.5``: reconnects from one host group together."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, colon, port = peer.rpartition(":")
        if colon and port.isdigit():
            return host
    return peer


class AclLog:
    """The bounded, grouped log of refusals; pure, the caller passes the time."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, group_ms: int = GROUP_MS) -> None:
        self.max_entries = max_entries
        self.group_ms = group_ms
        # Every kept entry by id, least recently refused first.
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        # The entry each group currently adds to (older ones of the group stay as they are).
        self._open: dict[_Group, Entry] = {}
        self._next_id = 0
        #: Refusals by reason since start (metrics read these plain ints).
        self.totals: dict[str, int] = {r.value: 0 for r in Reason}

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self, reason: Reason, user: str, peer: str, op: str, key: bytes | None, now_ms: int
    ) -> bool:
        """Record one refusal; True when it opened a new entry (worth a log line)."""
        self.totals[reason.value] += 1
        group = (reason, user, peer_host(peer), op, (key or b"")[:KEY_PREFIX_BYTES])
        entry = self._open.get(group)
        if entry is not None and now_ms - entry.last_ms < self.group_ms:
            entry.count += 1
            entry.last_ms = now_ms
            self._entries.move_to_end(entry.id)
            return False
        self._next_id += 1
        entry = Entry(*group, 1, now_ms, now_ms, self._next_id)
        self._entries[entry.id] = self._open[group] = entry
        while len(self._entries) > self.max_entries:
            _, dropped = self._entries.popitem(last=False)
            if self._open.get(_group(dropped)) is dropped:
                del self._open[_group(dropped)]
        return True

    def latest(self, count: int = 0) -> list[Entry]:
        """Entries by last refusal, newest first; ``count`` 0 means all."""
        entries = list(reversed(self._entries.values()))
        return entries[:count] if count > 0 else entries

    def reset(self) -> None:
        """Forget every entry (the totals stay: they are counters)."""
        self._entries.clear()
        self._open.clear()


_Group = tuple[Reason, str, str, str, bytes]


def _group(entry: Entry) -> _Group:
    return (entry.reason, entry.user, entry.peer, entry.op, entry.key)
