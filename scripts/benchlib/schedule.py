"""The order in which the two sides of a comparison are measured.

Other processes on a shared machine come and go; measuring one side entirely
before the other would hand all of a slow spell to one of them. Alternating
the order every round (A B, B A, A B, ...) spreads drift over both sides, and
with an even number of rounds cancels a linear drift exactly.
"""

from __future__ import annotations

from collections.abc import Sequence


def alternating(sides: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """``(round, side)`` pairs: every side once per round, the order reversed on odd rounds."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    order: list[tuple[int, str]] = []
    for r in range(rounds):
        for side in sides if r % 2 == 0 else reversed(sides):
            order.append((r, side))
    return order
