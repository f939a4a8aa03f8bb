"""The set of keys that have a TTL, stored so that a random member costs O(1).

The active expiry sampler and the volatile-* eviction policies both need
random keys that have a TTL. A dict cannot hand out a random member cheaply,
so the keys live in a list (with a position map for O(1) swap-removal) and
their deadlines in a parallel 8-byte array, which also keeps the deadline
itself out of a per-key int object.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, KeysView


class TtlIndex:
    """Deadlines (absolute milliseconds) of every key that has a TTL."""

    __slots__ = ("_deadlines", "_keys", "_pos", "keys")

    def __init__(self) -> None:
        self._pos: dict[bytes, int] = {}
        #: The keys that have a TTL, to test membership without a method call (read only):
        #: every read and write of a key asks, and most keys have none.
        self.keys: KeysView[bytes] = self._pos.keys()
        self._keys: list[bytes] = []
        self._deadlines = array("q")

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: bytes) -> bool:
        return key in self._pos

    def deadline(self, key: bytes) -> int:
        """Return the key's deadline, or 0 when it has no TTL."""
        i = self._pos.get(key)
        return 0 if i is None else self._deadlines[i]

    def deadlines(self, keys: Iterable[bytes]) -> list[int]:
        """The deadline of each of ``keys`` (0 for none), without a call per key."""
        get = self._pos.get
        values = self._deadlines
        return [values[i] if (i := get(k)) is not None else 0 for k in keys]

    def set(self, key: bytes, deadline: int) -> None:
        """Give ``key`` a deadline, replacing any earlier one."""
        i = self._pos.get(key)
        if i is None:
            # The array append is the step that can fail (a deadline outside
            # int64), so it goes first and a failure leaves the index unchanged.
            self._deadlines.append(deadline)
            self._pos[key] = len(self._keys)
            self._keys.append(key)
        else:
            self._deadlines[i] = deadline

    def discard(self, key: bytes) -> bool:
        """Forget ``key``; return whether it had a TTL."""
        i = self._pos.pop(key, None)
        if i is None:
            return False
        last = len(self._keys) - 1
        if i != last:
            moved = self._keys[last]
            self._keys[i] = moved
            self._deadlines[i] = self._deadlines[last]
            self._pos[moved] = i
        self._keys.pop()
        self._deadlines.pop()
        return True

    def random_entry(self, random: Callable[[], float]) -> tuple[bytes, int]:
        """Return a uniformly chosen ``(key, deadline)``; the index must not be empty."""
        i = int(random() * len(self._keys))
        return self._keys[i], self._deadlines[i]

    def sample_due(self, n: int, now: int, random: Callable[[], float]) -> list[bytes]:
        """Of ``n`` uniformly sampled keys (with replacement), the distinct ones due at ``now``."""
        keys, deadlines = self._keys, self._deadlines
        size = len(keys)
        due: dict[bytes, None] = {}
        if size:
            for _ in range(n):
                i = int(random() * size)
                if deadlines[i] <= now:
                    due[keys[i]] = None
        return list(due)

    def clear(self) -> None:
        """Forget every key."""
        self._pos.clear()
        self._keys.clear()
        del self._deadlines[:]
