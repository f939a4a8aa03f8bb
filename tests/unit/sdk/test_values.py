"""Values without a network: codecs, the stored layout, and AES-GCM encryption with rotation."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slotcache
from slotcache._commands import Commands
from slotcache._values import CODED, ENTRY, RAW, SEALED, Values
from slotcache.codecs import Codec, JsonCodec, MsgpackCodec, PickleCodec
from slotcache.crypto import Keyring
from slotcache.v1 import cache_pb2 as pb

KEY = b"user:1"
MSGPACK = Values(MsgpackCodec())

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


# ---- codecs and layout -------------------------------------------------------------------


@given(plain)
def test_msgpack_round_trips_python_objects(obj: Any) -> None:
    assert MSGPACK.load(KEY, MSGPACK.dump(KEY, obj)) == obj


@given(st.binary())
def test_bytes_pass_through_unchanged_and_round_trip(data: bytes) -> None:
    stored = MSGPACK.dump(KEY, data)
    if not data.startswith(b"\xc1"):
        assert stored == data  # what other languages and clusterctl see
    else:
        assert stored == RAW + data  # escaped, so it cannot pass for an encoded object
    assert MSGPACK.load(KEY, stored) == data


def test_objects_are_marked_and_bytes_like_values_become_bytes() -> None:
    assert MSGPACK.dump(KEY, "héllo").startswith(CODED)
    assert MSGPACK.dump(KEY, bytearray(b"ab")) == b"ab"
    assert MSGPACK.dump(KEY, memoryview(b"ab")) == b"ab"
    assert MSGPACK.load(KEY, MSGPACK.dump(KEY, (1, "a"))) == [1, "a"]  # msgpack has one array
    assert MSGPACK.load(KEY, MSGPACK.dump(KEY, {1: "a"})) == {1: "a"}


def test_json_and_pickle_codecs() -> None:
    json_values = Values(JsonCodec())
    stored = json_values.dump(KEY, {"a": [1, 2.5, "é"]})
    assert json.loads(stored[2:]) == {"a": [1, 2.5, "é"]}
    assert json_values.load(KEY, stored) == {"a": [1, 2.5, "é"]}
    pickled = Values(PickleCodec())
    assert pickled.load(KEY, pickled.dump(KEY, {1, 2, frozenset({3})})) == {1, 2, frozenset({3})}
    assert "WARNING" in (PickleCodec.__doc__ or "").upper()


class UpperCodec:
    """A codec that is not a subclass of anything: the Protocol is structural."""

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise TypeError("UpperCodec takes str")
        return obj.upper().encode()

    def decode(self, data: bytes) -> Any:
        return data.decode().lower()


def test_any_object_with_encode_and_decode_is_a_codec() -> None:
    assert isinstance(UpperCodec(), Codec)
    values = Values(UpperCodec())
    assert values.dump(KEY, "abc") == CODED + b"ABC"
    assert values.load(KEY, CODED + b"ABC") == "abc"
    with pytest.raises(TypeError, match="cannot be encoded by UpperCodec"):
        values.dump(KEY, 1)
    with pytest.raises(TypeError, match="encode"):
        Values(object())  # type: ignore[arg-type]


def test_bytes_only_mode_stores_and_returns_exact_bytes() -> None:
    raw = Values(None)
    for data in (b"abc", b"\xc1\x01not-msgpack", b""):
        assert raw.dump(KEY, data) == data
        assert raw.load(KEY, data) == data
    with pytest.raises(TypeError, match="codec=None"):
        raw.dump(KEY, "text")


def test_corrupt_or_unknown_values_raise_decode_error() -> None:
    with pytest.raises(slotcache.DecodeError, match="could not be decoded"):
        MSGPACK.load(KEY, CODED + b"\xc1")  # 0xC1 is never valid msgpack
    with pytest.raises(slotcache.DecodeError, match="unknown format"):
        MSGPACK.load(KEY, b"\xc1\x7f")
    with pytest.raises(slotcache.DecodeError, match="truncated"):
        MSGPACK.load(KEY, ENTRY + b"\x00")
    assert issubclass(slotcache.DecodeError, slotcache.SlotcacheError)


def test_get_or_set_entries_carry_their_compute_time_and_expiry() -> None:
    stored = MSGPACK.dump_entry(KEY, {"v": 1}, delta_ms=120, expires_at_ms=1_700_000_000_000)
    entry = MSGPACK.load_entry(KEY, stored)
    assert (entry.value, entry.delta_ms, entry.expires_at_ms) == ({"v": 1}, 120, 1_700_000_000_000)
    assert MSGPACK.load(KEY, stored) == {"v": 1}  # a plain get sees the value
    plain_entry = MSGPACK.load_entry(KEY, b"raw")
    assert (plain_entry.value, plain_entry.delta_ms) == (b"raw", None)


def test_commands_accept_str_keys_and_encode_values() -> None:
    commands = Commands(MSGPACK)
    command = commands.set("naïve", {"a": 1})
    assert command.request.key == "naïve".encode()
    assert command.request.value.startswith(CODED)
    reply = pb.GetReply(found=True, value=command.request.value)
    assert commands.get("naïve").parse(reply) == {"a": 1}
    mget = commands.mget(["a", b"b"])
    assert list(mget.request.keys) == [b"a", b"b"]
    replies = pb.MGetReply(results=[reply, pb.GetReply(found=False)])
    assert mget.parse(replies) == [{"a": 1}, None]


# ---- encryption -------------------------------------------------------------------------------


def sealed(keyring: Keyring) -> Values:
    return Values(MsgpackCodec(), keyring)


def test_encryption_round_trips_and_hides_the_value() -> None:
    values = sealed(Keyring({"k1": Keyring.generate_key()}))
    for obj in (b"secret bytes", "secret text", {"card": "4111"}, b"\xc1raw"):
        stored = values.dump(KEY, obj)
        assert stored.startswith(SEALED)
        assert b"secret" not in stored and b"4111" not in stored
        assert values.load(KEY, stored) == obj
    # A fresh nonce every time: equal values do not look equal.
    assert values.dump(KEY, b"same") != values.dump(KEY, b"same")


def test_tampered_ciphertext_is_refused() -> None:
    values = sealed(Keyring({"k1": Keyring.generate_key()}))
    stored = bytearray(values.dump(KEY, b"pay 10 EUR"))
    for position in (len(SEALED) + 1, len(stored) // 2, len(stored) - 1):  # key id, body, tag
        tampered = bytearray(stored)
        tampered[position] ^= 0x01
        with pytest.raises(slotcache.DecryptionError):
            values.load(KEY, bytes(tampered))
    with pytest.raises(slotcache.DecryptionError, match="truncated"):
        values.load(KEY, bytes(stored[:12]))
    assert issubclass(slotcache.DecryptionError, slotcache.DecodeError)


def test_a_ciphertext_copied_to_another_key_is_refused() -> None:
    values = sealed(Keyring({"k1": Keyring.generate_key()}))
    stored = values.dump(b"user:1:role", "admin")
    with pytest.raises(slotcache.DecryptionError, match="copied from another key"):
        values.load(b"user:2:role", stored)


def test_rotation_keeps_old_values_readable_and_writes_with_the_new_key() -> None:
    old = Keyring({"2024": Keyring.generate_key()})
    before = sealed(old).dump(KEY, "written in 2024")
    rotated = old.rotated("2025", Keyring.generate_key())
    assert rotated.primary == "2025" and set(rotated.key_ids) == {"2024", "2025"}
    after = sealed(rotated).dump(KEY, "written in 2025")
    assert sealed(rotated).load(KEY, before) == "written in 2024"
    assert sealed(rotated).load(KEY, after) == "written in 2025"
    assert b"2025" in after[: len(SEALED) + 5]  # the key id travels with the ciphertext
    # A reader that only has the old key cannot read the new value, and says why.
    with pytest.raises(slotcache.DecryptionError, match="'2025', not in the keyring"):
        sealed(old).load(KEY, after)
    # Dropping the old key (once everything was rewritten) makes old values unreadable.
    new_only = Keyring({"2025": rotated_key(rotated, "2025")})
    with pytest.raises(slotcache.DecryptionError):
        sealed(new_only).load(KEY, before)


def rotated_key(ring: Keyring, key_id: str) -> bytes:
    return ring._keys[key_id]


def test_a_different_key_with_the_same_id_fails_authentication() -> None:
    stored = sealed(Keyring({"k": Keyring.generate_key()})).dump(KEY, b"v")
    with pytest.raises(slotcache.DecryptionError, match="authentication"):
        sealed(Keyring({"k": Keyring.generate_key()})).load(KEY, stored)


def test_plaintext_is_refused_unless_accepted_for_a_migration() -> None:
    ring = Keyring({"k": Keyring.generate_key()})
    with pytest.raises(slotcache.DecryptionError, match="not encrypted"):
        sealed(ring).load(KEY, b"plain")
    migrating = Values(MsgpackCodec(), ring, accept_plaintext=True)
    assert migrating.load(KEY, b"plain") == b"plain"
    assert migrating.load(KEY, MSGPACK.dump(KEY, {"a": 1})) == {"a": 1}
    assert migrating.dump(KEY, b"plain").startswith(SEALED)  # new writes are sealed


def test_keyring_checks_its_keys() -> None:
    key = Keyring.generate_key()
    assert len(key) == 32
    for bad in ({}, {"k": b"short"}, {"": key}, {"x" * 256: key}):
        with pytest.raises(ValueError):
            Keyring(bad)
    with pytest.raises(ValueError, match="name the primary"):
        Keyring({"a": key, "b": Keyring.generate_key()})
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring({"a": key}, primary="b")
    with pytest.raises(ValueError, match="already used"):
        Keyring({"a": key}).rotated("a", Keyring.generate_key())
    assert key.hex() not in repr(Keyring({"a": key}))


def test_encryption_cost_per_operation() -> None:
    """Measured, not asserted tightly: encrypt + decrypt of a 100-byte value."""
    values = sealed(Keyring({"2025-01": Keyring.generate_key()}))
    value = b"x" * 100
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        values.load(KEY, values.dump(KEY, value))
    sealed_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        MSGPACK.load(KEY, MSGPACK.dump(KEY, value))
    plain_us = (time.perf_counter() - started) / n * 1e6
    print(f"\nencrypt+decrypt of 100 B: {sealed_us:.2f} µs per op (plain bytes: {plain_us:.2f} µs)")
    assert sealed_us < 200  # a generous bound: it is a few µs on any recent CPU
