"""The keys every scheme places, and the two loads they carry: one per key, or Zipf requests.

Keys are random names drawn from the study's seed (``key:`` and 16 hex
digits), so that neither the 64-bit hash nor slotcache's CRC16 sees a
pattern a real key space would not have. The Zipf workload gives the key of
rank r a share of requests proportional to 1/r^s; ranks follow the order the
keys were drawn in, which is independent of where any scheme puts them.
"""

from __future__ import annotations

from binascii import crc_hqx
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

from hashinglib.hashing import U64, key_hashes

# The contract the server, the SDK and clusterctl share (pinned to Redis's slots by a test).
from slotcache.contract import hash_tag, key_slot

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
LoadKind = Literal["keys", "zipf"]
LOAD_KINDS: tuple[LoadKind, ...] = ("keys", "zipf")


@dataclass(frozen=True)
class Workload:
    """Keys with their hashes, their slotcache slots and their request shares."""

    keys: list[bytes]
    hashes: U64
    slots: I64
    zipf: F64
    zipf_exponent: float

    @property
    def size(self) -> int:
        """How many keys."""
        return len(self.keys)

    @cached_property
    def crc16(self) -> I64:
        """The CRC16 that ``key_slot`` reduces to 14 bits, whole: a 65536-slot what-if."""
        return np.fromiter(
            (crc_hqx(hash_tag(k), 0) for k in self.keys), dtype=np.int64, count=self.size
        )

    def load(self, kind: LoadKind) -> F64:
        """What each key weighs: 1 (it is stored somewhere), or its share of requests."""
        return np.ones(self.size) if kind == "keys" else self.zipf


def zipf_shares(count: int, exponent: float) -> F64:
    """Request shares of ranks 1..count under Zipf(exponent); they add up to 1."""
    weights = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** exponent
    shares: F64 = weights / weights.sum()
    return shares


def make_workload(count: int, seed: int, zipf_exponent: float = 1.0) -> Workload:
    """``count`` distinct random keys from ``seed``."""
    rng = np.random.default_rng(seed)
    # dict keeps the draw order (the Zipf ranks) while dropping the rare repeat.
    names: dict[int, None] = {}
    while len(names) < count:
        draw = rng.integers(0, 1 << 63, count - len(names), dtype=np.int64)
        names.update(dict.fromkeys(int(x) for x in draw))
    keys = [b"key:%016x" % name for name in names]
    return Workload(
        keys=keys,
        hashes=key_hashes(keys),
        slots=np.fromiter(map(key_slot, keys), dtype=np.int64, count=len(keys)),
        zipf=zipf_shares(len(keys), zipf_exponent),
        zipf_exponent=zipf_exponent,
    )
