"""Opt-in value encryption: AES-GCM with a keyring, so keys can be rotated without downtime.

Nodes only ever see ciphertext. Each ciphertext names the key that sealed
it, so a keyring holding the old keys keeps reading values written before a
rotation while every new write uses the primary key::

    ring = Keyring({"2024-06": old_key})
    ring = ring.rotated("2025-01", new_key)   # new primary; "2024-06" still decrypts

The cache key a value is stored under is bound as associated data: a
ciphertext copied (or moved by an attacker) to another key fails
authentication instead of silently serving the wrong record.

Layout of a sealed value (what follows the SDK's frame tag)::

    key id length (1 byte) | key id (UTF-8) | nonce (12 bytes) | ciphertext | tag (16 bytes)

Nonces are random (96 bits), which is safe for about 2**32 encryptions per
key; rotate keys well before that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from slotcache.errors import DecryptionError

__all__ = ["Keyring"]

NONCE_BYTES = 12
TAG_BYTES = 16
_KEY_SIZES = (16, 24, 32)
# Domain separation: the associated data of a slotcache value, never of anything else.
_AAD_PREFIX = b"slotcache-value-aes-gcm-v1\x00"


class Keyring:
    """AES-GCM keys by id; ``primary`` encrypts, every key decrypts what it sealed.

    ``keys`` maps a key id (a short str, e.g. ``"2025-01"``) to a 16, 24 or 32
    byte AES key (32 recommended; :meth:`generate_key` makes one). With one
    key it is the primary. A keyring is immutable: :meth:`rotated` returns a
    new one, so a client's keyring never changes under a running call.
    """

    __slots__ = ("_ciphers", "_headers", "_keys", "primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str | None = None) -> None:
        """``keys`` by id; ``primary`` is the one new values are sealed with."""
        if not keys:
            raise ValueError("a keyring needs at least one key")
        if primary is None:
            if len(keys) != 1:
                raise ValueError("name the primary key when the keyring holds several")
            primary = next(iter(keys))
        if primary not in keys:
            raise ValueError(f"primary key {primary!r} is not in the keyring")
        self._keys = dict(keys)
        self._ciphers: dict[bytes, AESGCM] = {}
        self._headers: dict[str, bytes] = {}
        for key_id, key in keys.items():
            encoded = key_id.encode()
            if not 0 < len(encoded) < 256:
                raise ValueError("a key id must be 1 to 255 bytes of UTF-8")
            if not isinstance(key, bytes) or len(key) not in _KEY_SIZES:
                raise ValueError(f"key {key_id!r} must be 16, 24 or 32 bytes")
            self._ciphers[encoded] = AESGCM(key)
            self._headers[key_id] = bytes([len(encoded)]) + encoded
        self.primary = primary

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r}, primary={self.primary!r})"

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 256-bit AES key."""
        return AESGCM.generate_key(bit_length=256)

    def rotated(self, key_id: str, key: bytes) -> Keyring:
        """A keyring with ``key_id`` added as the new primary; the current keys still decrypt."""
        keys = dict(self._keys)
        if key_id in keys and keys[key_id] != key:
            raise ValueError(f"key id {key_id!r} is already used for another key")
        keys[key_id] = key
        return Keyring(keys, key_id)

    @property
    def key_ids(self) -> list[str]:
        """Every key id this keyring can decrypt with."""
        return list(self._keys)

    def encrypt(self, name: bytes, plaintext: bytes) -> bytes:
        """Seal ``plaintext`` under the primary key, bound to the cache key ``name``."""
        header = self._headers[self.primary]
        nonce = os.urandom(NONCE_BYTES)
        cipher = self._ciphers[header[1:]]
        return header + nonce + cipher.encrypt(nonce, plaintext, _AAD_PREFIX + header + name)

    def decrypt(self, name: bytes, sealed: bytes) -> bytes:
        """Open what :meth:`encrypt` sealed for ``name``; DecryptionError if anything is off."""
        if not sealed:
            raise DecryptionError("the encrypted value is empty")
        end = 1 + sealed[0]
        key_id = sealed[1:end]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            shown = key_id.decode(errors="replace")
            raise DecryptionError(f"the value was encrypted with key {shown!r}, not in the keyring")
        if len(sealed) < end + NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("the encrypted value is truncated")
        nonce = sealed[end : end + NONCE_BYTES]
        try:
            aad = _AAD_PREFIX + sealed[:end] + name
            return cipher.decrypt(nonce, sealed[end + NONCE_BYTES :], aad)
        except InvalidTag:
            raise DecryptionError(
                "the encrypted value failed authentication: it was tampered with, "
                "or copied from another key"
            ) from None
