"""Numbers in clusterctl's messages, worded as people read them. Pure.

``1 key`` and ``3 keys``, ``1.5 MiB``, and a keys-per-second rate only
where it says something: a migration costs tens of milliseconds whatever
it carries, so a move of a handful of keys would report the fixed cost as
a throughput (``6 keys/s`` for 3 keys).
"""

from __future__ import annotations

# Below this many keys a move's time is mostly the migrations' fixed cost, not copying.
MIN_KEYS_FOR_RATE = 1000


def counted(n: int, singular: str, plural: str = "") -> str:
    """``1 key``, ``1,234 keys``; ``plural`` when adding an s is wrong (``primaries``)."""
    word = singular if n == 1 else (plural or f"{singular}s")
    return f"{n:,} {word}"


def human_bytes(n: float) -> str:
    """``1.5 MiB`` style sizes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def key_rate(keys: int, seconds: float) -> str | None:
    """``12,345 keys/s``, or None when too few keys moved for a rate to mean anything."""
    if keys < MIN_KEYS_FOR_RATE or seconds <= 0:
        return None
    return f"{keys / seconds:,.0f} keys/s"
