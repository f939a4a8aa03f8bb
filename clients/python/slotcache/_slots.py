"""Key to slot, computed by the client exactly as every node computes it.

A smart client can only send a key straight to its owner if it hashes the
key the same way the cluster does: CRC16/XMODEM of the key, or of its hash
tag, modulo 16384 (the Redis Cluster rule). The SDK cannot import the server
package, so the dozen lines live here too; a unit test pins them to known
Redis slot numbers.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Iterable

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
    """The slot of ``key``, in ``0..16383``."""
    return crc_hqx(hash_tag(key), 0) & _SLOT_MASK


def key_slots(keys: list[bytes]) -> list[int]:
    """The slot of each key; keys without a ``{`` skip the hash-tag search (the common case)."""
    return [crc_hqx(k, 0) & _SLOT_MASK if b"{" not in k else key_slot(k) for k in keys]


def to_ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Slots as inclusive ``(start, end)`` ranges, the way the wire and people name them.

    The server's slot table has the same helper; the SDK keeps its own for
    the reason given above.
    """
    ranges: list[tuple[int, int]] = []
    for slot in sorted(set(slots)):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges
