"""Key to slot mapping, exactly as Redis Cluster defines it.

Keeping the mapping identical to Redis (CRC16/XMODEM of the key, or of its
hash tag, modulo 16384) means users can reason about co-location with the
rules they already know, and any Redis slot calculator gives the same answer.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOT_COUNT = 16384
_SLOT_MASK = SLOT_COUNT - 1


def hash_tag(key: bytes) -> bytes:
    """Return the part of ``key`` that is hashed.

    Only the first ``{`` counts, and only when a ``}`` follows it with at least
    one byte between them; otherwise the whole key is hashed.
    """
    start = key.find(b"{")
    if start == -1:
        return key
    end = key.find(b"}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1 : end]


def key_slot(key: bytes) -> int:
    """Map a key to its slot in ``0..16383``."""
    return crc_hqx(hash_tag(key), 0) & _SLOT_MASK


def check_slot(slot: int) -> int:
    """Validate a slot number coming from outside, so callers get a clear error."""
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")
    return slot
