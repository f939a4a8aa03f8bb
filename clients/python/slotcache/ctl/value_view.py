"""How ``clusterctl get`` shows a stored value: text, bytes, or the object the SDK stored. Pure.

The server stores opaque bytes. The Python SDK stores bytes as they are and
other objects msgpack-encoded behind a marker (see :mod:`slotcache._values`),
so a value is shown as the SDK would return it: text when the bytes are
printable UTF-8 (as ``redis-cli GET`` prints them), a ``b'...'`` literal
for other bytes, or the decoded object. Encrypted values cannot be read
without the writer's keyring, and say so.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from slotcache._values import SEALED, Values
from slotcache.codecs import MsgpackCodec
from slotcache.errors import DecodeError

Kind = Literal["text", "bytes", "object", "encrypted", "undecodable"]

_DECODER = Values(MsgpackCodec())
_LAYOUT_KEY = b""  # framing does not involve the key (only encryption does)


@dataclass(frozen=True)
class ValueView:
    """One stored value, ready to print or to put in JSON."""

    kind: Kind
    # The text, the bytes, or the decoded object; None when it cannot be read.
    value: Any
    size: int
    raw: bytes

    def as_json(self) -> dict[str, Any]:
        """``{type, value, size, base64}``: ``base64`` is always the stored bytes, exactly."""
        value = self.value if self.kind in ("text", "object") else None
        return {
            "type": self.kind,
            "value": jsonable(value),
            "size": self.size,
            "base64": base64.b64encode(self.raw).decode(),
        }


def is_text(data: bytes) -> bool:
    """Printable UTF-8 (newlines and tabs allowed): safe to print as it is."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\n\t" for c in text)


def view(raw: bytes) -> ValueView:
    """What ``raw``, as stored, means to the Python SDK."""
    if raw[: len(SEALED)] == SEALED:
        return ValueView("encrypted", None, len(raw), raw)
    try:
        value = _DECODER.load(_LAYOUT_KEY, raw)
    except DecodeError:
        return ValueView("undecodable", raw, len(raw), raw)
    if isinstance(value, bytes):
        if is_text(value):
            return ValueView("text", value.decode(), len(raw), raw)
        return ValueView("bytes", value, len(raw), raw)
    return ValueView("object", value, len(raw), raw)


def jsonable(value: Any) -> Any:
    """``value`` for JSON: bytes as text or ``{"base64": ...}``, map keys as strings."""
    if isinstance(value, bytes):
        return value.decode() if is_text(value) else {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def ttl_text(ttl_ms: int) -> str:
    """``59,998 ms`` for a key with a TTL, or what -1 means (the server's "no TTL")."""
    if ttl_ms < 0:
        return "no TTL (the key does not expire)"
    return f"{ttl_ms:,} ms"
