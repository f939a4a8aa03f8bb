"""When a failed call may be sent again, and how long to wait first. Pure functions.

Retrying is only safe when running the command twice cannot differ from
running it once (``Command.idempotent``), or when the request certainly never
ran: the connection was never made, the operation was still queued for a
Pipeline stream that broke (``NotSent``), or the cluster refused it up front
(CLUSTERDOWN). Anything else — an ``Incr`` whose connection broke after it
was written — is raised to the caller, who knows whether a double apply is
acceptable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slotcache.contract import Reason
from slotcache.errors import NotSent, SlotcacheError, Unavailable

# gRPC's words for a call that failed before any transport took it: the
# request bytes never left this process. (A call that broke in flight says
# "Socket closed", "Stream removed" or "Connection reset" instead.)
_NEVER_SENT_MARKERS = (
    "failed to connect to all addresses",
    "dns resolution failed",
    "name resolution failure",
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How UNAVAILABLE is retried: exponential backoff with jitter, within the call's deadline.

    ``delay(n)`` is drawn from ``[c/2, c]`` where ``c = min(max_delay,
    base_delay * multiplier**(n-1))`` ("equal jitter"): at least half the
    step, so a burst of clients spreads out without anyone retrying at once.
    A call stops after ``max_retries`` retries, or earlier when its deadline
    would pass before the next attempt could start.
    """

    max_retries: int = 10
    base_delay: float = 0.05
    max_delay: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")

    def ceiling(self, retry: int) -> float:
        """The largest delay before retry number ``retry`` (1-based)."""
        exponent = min(retry - 1, 64)  # far past max_delay; avoids float overflow
        return min(self.max_delay, self.base_delay * self.multiplier**exponent)

    def delay(self, retry: int, random: Callable[[], float]) -> float:
        """The delay before retry number ``retry``; ``random()`` returns a float in [0, 1)."""
        ceiling = self.ceiling(retry)
        return ceiling / 2 + random() * ceiling / 2


def could_not_connect(error: SlotcacheError) -> bool:
    """No connection to the node could be made (refused, unresolvable): nothing answered."""
    if not isinstance(error, Unavailable):
        return False
    message = error.message.lower()
    return any(marker in message for marker in _NEVER_SENT_MARKERS)


def never_sent(error: SlotcacheError) -> bool:
    """The request certainly did not run, so even a non-idempotent command may be resent."""
    if isinstance(error, NotSent) or (
        isinstance(error, Unavailable) and error.reason == Reason.CLUSTER_DOWN
    ):
        return True
    return could_not_connect(error)


def retryable(error: SlotcacheError, idempotent: bool) -> bool:
    """Whether ``error`` may be answered by sending the same request again."""
    return isinstance(error, Unavailable) and (idempotent or never_sent(error))
