"""How the study's numbers are written in its tables and sentences."""

from __future__ import annotations

from collections.abc import Sequence

NONE = "\u2014"
TIMES = "\u00d7"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float, digits: int = 1) -> str:
    """A share as a percentage."""
    return f"{100 * x:.{digits}f}%"


def size_bytes(n: int) -> str:
    """Bytes in B, KiB or MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def times(value: float) -> str:
    """A ratio, to two decimals, with a multiplication sign."""
    return f"{value:.2f}{TIMES}"
