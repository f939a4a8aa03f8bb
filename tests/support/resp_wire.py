"""A RESP connection driven through its protocol callbacks, with no socket.

The unit tests feed bytes to a node's connection as the event loop would
and read back what it wrote: each chunk arrives in a loop step of its own,
and replies leave at the end of the step, as they do on a real port.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis

from slotcache_server.resp.connection import RespConnection
from slotcache_server.resp.listener import RespListener


class Transport:
    """Records what the connection writes and whether it closed."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5) if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect(listener: RespListener) -> tuple[RespConnection, Transport]:
    """A new connection of ``listener`` on a recording transport."""
    conn = listener._connection()
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def command(*args: bytes) -> bytes:
    """One command as a client sends it."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def replies(data: bytes) -> list[Any]:
    """Every reply in ``data``; errors as ``("error", text)``. Fails on a partial reply."""
    reader = hiredis.Reader()
    reader.feed(bytes(data))
    out = []
    while (reply := reader.gets()) is not False:
        out.append(("error", str(reply)) if isinstance(reply, hiredis.ReplyError) else reply)
    assert not reader.has_data(), "a partial reply was written"
    return out


def feed(listener: RespListener, chunks: list[bytes]) -> tuple[list[Any], bool]:
    """Send ``chunks`` on a new connection, a loop step each: its replies, and whether it closed."""

    async def run() -> tuple[list[Any], bool]:
        conn, transport = connect(listener)
        for chunk in chunks:
            if transport.closed:
                break
            conn.data_received(chunk)
            await asyncio.sleep(0)
        conn.connection_lost(None)
        return replies(transport.written), transport.closed

    return asyncio.run(run())
