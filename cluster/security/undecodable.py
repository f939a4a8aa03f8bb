"""Quiet logging of requests that do not parse: one line per second, not a traceback each.

gRPC logs every request its deserializer rejects as an unexpected servicer
error, at ERROR with a full traceback. Anyone who can reach a port could
then write a few hundred bytes of log per garbage message they send. The
filter keeps the first report of each second as one WARNING line without
the traceback, counting the ones it drops, and leaves every other record
alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from google.protobuf.message import DecodeError

#: The logger grpc's asyncio server reports servicer exceptions on.
GRPC_SERVER_LOGGER = "grpc._cython.cygrpc"
REPORT_EVERY_S = 1.0


class UndecodableRequests(logging.Filter):
    """Turns gRPC's DecodeError tracebacks into a rate-limited one-line warning."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._next_report = 0.0
        self.dropped = 0
        self.total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but DecodeError reports, and of those one per second, shortened."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, DecodeError):
            return True
        self.total += 1
        now = self._clock()
        if now < self._next_report:
            self.dropped += 1
            return False
        self._next_report = now + REPORT_EVERY_S
        # gRPC's message ends with the method: "... raised by servicer method [/pkg.Svc/Rpc]".
        method = record.getMessage().rpartition("[")[2].rstrip("]")
        more = f"; {self.dropped} more since the last report" if self.dropped else ""
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = (
            "refused a request to %s that does not parse (%s)%s",
            (
                method,
                exc,
                more,
            ),
        )
        record.exc_info, record.exc_text = None, None
        self.dropped = 0
        return True


def quiet_undecodable_requests() -> UndecodableRequests:
    """Install the filter on gRPC's server logger (once) and return it."""
    logger = logging.getLogger(GRPC_SERVER_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, UndecodableRequests):
            return existing
    undecodable = UndecodableRequests()
    logger.addFilter(undecodable)
    return undecodable
