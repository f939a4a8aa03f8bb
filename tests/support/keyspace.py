"""A fake millisecond clock and the int64 bounds, for the keyspace's pure tests."""

from __future__ import annotations

START_MS = 1_700_000_000_000

# The keyspace's integers (INCR values, deadlines) are signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class FakeClock:
    """Milliseconds that move only when a test moves them, so expiry lands where it wants."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
