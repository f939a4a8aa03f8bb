"""Requests that do not parse are logged as one short line per second, not a traceback each."""

from __future__ import annotations

import logging
import sys

from google.protobuf.message import DecodeError

from slotcache_server.security.undecodable import UndecodableRequests

GRPC_WORDS = "Unexpected [DecodeError] raised by servicer method [/slotcache.v1.Cache/Get]"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def grpc_record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "grpc._cython.cygrpc", logging.ERROR, "server.pyx", 1, GRPC_WORDS, None, info
    )


def test_one_short_warning_per_second_counting_the_rest():
    clock = Clock()
    undecodable = UndecodableRequests(clock)
    first = grpc_record(DecodeError("Wire format was corrupt"))
    assert undecodable.filter(first)
    assert (first.levelno, first.exc_info) == (logging.WARNING, None)
    assert first.getMessage() == (
        "refused a request to /slotcache.v1.Cache/Get that does not parse (Wire format was corrupt)"
    )
    assert not any(undecodable.filter(grpc_record(DecodeError("x"))) for _ in range(50))
    clock.now += 1.0
    later = grpc_record(DecodeError("x"))
    assert undecodable.filter(later)
    assert later.getMessage().endswith("; 50 more since the last report")
    assert undecodable.total == 52


def test_other_errors_keep_their_traceback():
    record = grpc_record(RuntimeError("a real bug"))
    assert UndecodableRequests(Clock()).filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
