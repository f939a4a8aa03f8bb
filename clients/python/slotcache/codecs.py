"""Value codecs: how Python objects become the bytes a node stores, and back.

The server stores opaque bytes. A client turns everything that is not bytes
into bytes with its codec, and marks the result so a reader knows to decode
it (see :mod:`slotcache._values` for the framing). Bytes themselves pass
through unchanged, so values written by other languages, by ``clusterctl``
or by a client with ``codec=None`` read back as the very same bytes.

Any object with ``encode(obj) -> bytes`` and ``decode(bytes) -> obj`` is a
codec (:class:`Codec` is a structural Protocol: no base class to inherit).
msgpack is the default because it is compact, fast (C extension), safe to
decode from an untrusted cache, and has implementations in every language.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

import msgpack  # type: ignore[import-untyped,unused-ignore]

__all__ = ["Codec", "JsonCodec", "MsgpackCodec", "PickleCodec"]


@runtime_checkable
class Codec(Protocol):
    """Turns objects into bytes and back; ``decode(encode(x))`` must equal ``x``."""

    def encode(self, obj: Any) -> bytes:
        """The bytes to store for ``obj``; raise TypeError for what the codec cannot represent."""
        ...

    def decode(self, data: bytes) -> Any:
        """The object ``data`` was encoded from; raise (ValueError, ...) if it is corrupt."""
        ...


class MsgpackCodec:
    """MessagePack: the default codec for str, int, float, bool, None, bytes, list, dict.

    Tuples come back as lists (msgpack has one array type). Maps may have
    non-string keys (``{1: "a"}`` round trips). ``ext_hook``/``default`` can be
    passed through for application types.
    """

    def __init__(self, *, default: Any = None, ext_hook: Any = None) -> None:
        self._packer_options: dict[str, Any] = {"use_bin_type": True, "default": default}
        unpack: dict[str, Any] = {"raw": False, "strict_map_key": False}
        if ext_hook is not None:
            unpack["ext_hook"] = ext_hook
        self._unpack_options = unpack

    def encode(self, obj: Any) -> bytes:
        """Pack ``obj``; TypeError for an object msgpack cannot represent."""
        data: bytes = msgpack.packb(obj, **self._packer_options)
        return data

    def decode(self, data: bytes) -> Any:
        """Unpack one msgpack document; extra trailing bytes are an error."""
        return msgpack.unpackb(data, **self._unpack_options)


class JsonCodec:
    """JSON (UTF-8): slower and larger than msgpack, but readable by anything."""

    def encode(self, obj: Any) -> bytes:
        """Compact JSON; TypeError for what JSON cannot represent."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        """Parse UTF-8 JSON."""
        return json.loads(data)


class PickleCodec:
    """Python's pickle: any picklable object. NEVER the default, and dangerous.

    .. warning::
       Unpickling runs code chosen by whoever wrote the value. Anyone who
       can write to the cache (another service, a compromised node, a
       mistaken ``clusterctl`` command) can then execute code in every
       process that reads it. Use it only when every writer is trusted, and
       prefer combining it with value encryption (whose authentication
       rejects values this keyring did not write).
    """

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self._protocol = protocol

    def encode(self, obj: Any) -> bytes:
        """Pickle ``obj``."""
        return pickle.dumps(obj, protocol=self._protocol)

    def decode(self, data: bytes) -> Any:
        """Unpickle ``data`` (see the class warning)."""
        return pickle.loads(data)
