"""Client-side counters, kept as plain ints so counting costs nothing on the hot path."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ClientStats:
    """What routing has had to do so far; read them, export them, never reset them.

    The counters only grow. Under concurrent use from several threads an
    increment can, rarely, be lost: they are for dashboards and tests, not
    for accounting.
    """

    #: MOVED replies followed (each one also patched the slot map).
    redirects: int = 0
    #: Slot maps installed from a Topology reply, the first one included.
    refreshes: int = 0
    #: Refreshes in which no node answered Topology (the old map was kept).
    refresh_failures: int = 0
    #: Calls (or parts of split calls) sent again after UNAVAILABLE.
    retries: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name, e.g. for an OpenTelemetry observable callback."""
        return asdict(self)
