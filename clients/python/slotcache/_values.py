"""How a value is laid out in the cache: bytes as they are, objects framed, optionally sealed.

Pure functions of the client's codec and keyring; no I/O. The layout:

============================  ==================================================
stored bytes                  meaning
============================  ==================================================
anything not starting 0xC1    raw bytes, exactly as the caller gave them
``C1 00`` + bytes             raw bytes that happened to start with 0xC1 (escaped)
``C1 01`` + payload           an object, ``codec.encode(obj)``
``C1 02`` + 12 bytes + frame  a get_or_set entry: compute time (uint32 ms) and
                              expiry (uint64 Unix ms), then the value's frame
``C1 03`` + sealed            AES-GCM ciphertext (see :mod:`slotcache.crypto`)
                              of one of the frames above
============================  ==================================================

0xC1 is the one byte msgpack never uses, and a rare first byte for text or
binary formats, so bytes written by other clients pass through unchanged
(unless they start with it, in which case this client would try to decode
them: use ``codec=None`` for such data). With a keyring, every value is
sealed, raw bytes included, and a value that is not sealed is refused unless
the keyring is configured to accept plaintext (for a migration).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from slotcache.codecs import Codec
from slotcache.crypto import Keyring
from slotcache.errors import DecodeError, DecryptionError

MARK = b"\xc1"
RAW = b"\xc1\x00"
CODED = b"\xc1\x01"
ENTRY = b"\xc1\x02"
SEALED = b"\xc1\x03"
_ENTRY_HEADER = struct.Struct(">IQ")
_MAX_DELTA_MS = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Entry:
    """A value read back with what get_or_set stored beside it (None when it stored nothing)."""

    value: Any
    delta_ms: int | None = None
    expires_at_ms: int | None = None


class Values:
    """Turns a caller's value into the stored bytes and back, for one client.

    ``codec=None`` is the bytes-only mode: values must be bytes-like and are
    stored and returned exactly (nothing is framed or decoded). A
    ``keyring`` seals every stored value, bound to its cache key.
    """

    __slots__ = ("accept_plaintext", "codec", "keyring", "passthrough")

    def __init__(
        self,
        codec: Codec | None,
        keyring: Keyring | None = None,
        *,
        accept_plaintext: bool = False,
    ) -> None:
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError("codec must have encode(obj) -> bytes and decode(bytes) -> obj")
        self.codec = codec
        self.keyring = keyring
        self.accept_plaintext = accept_plaintext
        # No keyring: reads of bytes that carry no frame return them untouched (the hot path).
        self.passthrough = keyring is None

    # ---- writing -----------------------------------------------------------------------

    def dump(self, key: bytes, obj: Any) -> bytes:
        """The bytes to store under ``key`` for ``obj``."""
        data = self._frame(obj)
        if self.keyring is not None:
            return SEALED + self.keyring.encrypt(key, data)
        return data

    def dump_entry(self, key: bytes, obj: Any, delta_ms: int, expires_at_ms: int) -> bytes:
        """``obj`` with get_or_set's compute time and expiry beside it (for early refresh)."""
        if self.codec is None:
            raise TypeError("early refresh needs a codec: the client was made with codec=None")
        header = _ENTRY_HEADER.pack(min(max(delta_ms, 0), _MAX_DELTA_MS), max(expires_at_ms, 0))
        data = ENTRY + header + self._frame(obj)
        if self.keyring is not None:
            return SEALED + self.keyring.encrypt(key, data)
        return data

    def _frame(self, obj: Any) -> bytes:
        if type(obj) is bytes:
            data = obj
        elif isinstance(obj, bytearray | memoryview):
            data = bytes(obj)
        elif self.codec is None:
            raise TypeError(
                f"value must be bytes, not {type(obj).__name__} (the client has codec=None)"
            )
        else:
            try:
                return CODED + self.codec.encode(obj)
            except Exception as exc:
                raise TypeError(
                    f"a value of type {type(obj).__name__} cannot be encoded "
                    f"by {type(self.codec).__name__}: {exc}"
                ) from exc
        if self.codec is not None and data[:1] == MARK:
            return RAW + data
        return data

    # ---- reading -----------------------------------------------------------------------

    def load(self, key: bytes, data: bytes) -> Any:
        """The value stored under ``key`` as ``data``."""
        if self.passthrough and data[:1] != MARK:
            return data
        return self.load_entry(key, data).value

    def load_entry(self, key: bytes, data: bytes) -> Entry:
        """The value and, for a get_or_set entry, its compute time and expiry."""
        data = self._unseal(key, data)
        if self.codec is None:
            return Entry(data)
        if data[:2] == ENTRY:
            if len(data) < 2 + _ENTRY_HEADER.size:
                raise DecodeError("a get_or_set entry is truncated")
            delta_ms, expires_at_ms = _ENTRY_HEADER.unpack_from(data, 2)
            return Entry(self._unframe(data[2 + _ENTRY_HEADER.size :]), delta_ms, expires_at_ms)
        return Entry(self._unframe(data))

    def _unseal(self, key: bytes, data: bytes) -> bytes:
        if self.keyring is None:
            return data
        if data[:2] == SEALED:
            return self.keyring.decrypt(key, data[2:])
        if self.accept_plaintext:
            return data
        raise DecryptionError("the stored value is not encrypted, and this client requires it")

    def _unframe(self, data: bytes) -> Any:
        if data[:1] != MARK:
            return data
        tag = data[:2]
        if tag == RAW:
            return data[2:]
        if tag == CODED:
            assert self.codec is not None
            try:
                return self.codec.decode(data[2:])
            except Exception as exc:
                raise DecodeError(f"the stored value could not be decoded: {exc}") from exc
        raise DecodeError(f"the stored value has an unknown format (tag {tag.hex()})")
