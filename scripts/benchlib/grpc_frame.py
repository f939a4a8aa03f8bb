"""gRPC length-prefixed message framing, for feeding raw HTTP/2 load generators.

h2load knows nothing about gRPC; it posts a body file as is. A unary gRPC
request body is one frame: a compressed flag byte (0), the message length as
a 4-byte big-endian integer, then the serialized message.
"""

from __future__ import annotations

import struct

_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size
UNCOMPRESSED = 0


def frame(message: bytes) -> bytes:
    """One uncompressed gRPC frame carrying ``message``."""
    return _HEADER.pack(UNCOMPRESSED, len(message)) + message


def unframe(data: bytes) -> bytes:
    """The message in a single uncompressed frame; raise if ``data`` is anything else."""
    if len(data) < HEADER_BYTES:
        raise ValueError("too short for a gRPC frame")
    flag, length = _HEADER.unpack_from(data)
    if flag != UNCOMPRESSED:
        raise ValueError(f"compressed flag {flag}; only uncompressed frames are supported")
    if len(data) != HEADER_BYTES + length:
        raise ValueError(f"frame says {length} bytes, {len(data) - HEADER_BYTES} follow")
    return data[HEADER_BYTES:]
