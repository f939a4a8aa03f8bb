"""When a node writes its snapshot: ``off``, ``on-shutdown`` or ``interval:SECONDS``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SnapshotPolicy:
    """``on_shutdown`` is implied by an interval: a clean stop always leaves the newest data."""

    on_shutdown: bool = False
    interval_s: float = 0.0

    @property
    def enabled(self) -> bool:
        """Whether the node writes (and so reads back) snapshots at all."""
        return self.on_shutdown or self.interval_s > 0

    @classmethod
    def parse(cls, text: str) -> SnapshotPolicy:
        """Parse the ``--snapshot`` value."""
        value = text.strip().lower()
        if value == "off":
            return cls()
        if value == "on-shutdown":
            return cls(on_shutdown=True)
        if value.startswith("interval:"):
            try:
                seconds = float(value.removeprefix("interval:"))
            except ValueError:
                seconds = 0.0
            if seconds > 0:
                return cls(on_shutdown=True, interval_s=seconds)
        raise ValueError(f"{text!r}: use off, on-shutdown or interval:SECONDS (seconds > 0)")

    def __str__(self) -> str:
        if self.interval_s:
            return f"interval:{self.interval_s:g}"
        return "on-shutdown" if self.on_shutdown else "off"
