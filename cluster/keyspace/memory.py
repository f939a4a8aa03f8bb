"""Per-entry memory estimates.

The keyspace keeps a running total of these estimates rather than asking the
allocator, because asking is far too slow for the hot path. The constants
model CPython's allocator on 64-bit builds: objects up to 512 bytes come from
pymalloc in 16-byte size classes; larger ones come from malloc, which adds a
header and rounds to 16 bytes. The dict constants were measured with
tracemalloc on a keyspace of one million entries, and a test keeps the total
within 20% of tracemalloc's figure.
"""

from __future__ import annotations

_BYTES_HEADER = 33  # sys.getsizeof(b"")
_PYMALLOC_LIMIT = 512
_MALLOC_HEADER = 16

# One slot in a per-slot dict (entry plus index, averaged over load factors).
DICT_SLOT = 40
# A key's position (an int object), its list slot and its 8-byte deadline in the TTL index.
TTL_ENTRY = 40 + 32 + 8 + 8 + 16


def bytes_object(n: int) -> int:
    """Estimate the allocated size of a ``bytes`` object holding ``n`` bytes."""
    raw = _BYTES_HEADER + n
    if raw <= _PYMALLOC_LIMIT:
        return (raw + 15) & ~15
    return (raw + _MALLOC_HEADER + 15) & ~15


def entry(key_len: int, value_len: int, per_key_extra: int) -> int:
    """Estimate one entry: its key, its value, its dict slot and any policy bookkeeping."""
    return bytes_object(key_len) + bytes_object(value_len) + DICT_SLOT + per_key_extra


def resized(old_len: int, new_len: int) -> int:
    """The change in estimate when a value of ``old_len`` bytes is replaced by ``new_len``.

    Overwrites are the most common write: values of one size class (the
    usual case) cost no estimate at all.
    """
    if (old_len + _BYTES_HEADER + 15) >> 4 == (new_len + _BYTES_HEADER + 15) >> 4:
        return 0
    return bytes_object(new_len) - bytes_object(old_len)
