"""clusterctl get shows a stored value as the Python SDK reads it. Pure."""

from __future__ import annotations

import base64

import pytest

from slotcache._values import Values
from slotcache.codecs import MsgpackCodec
from slotcache.crypto import Keyring
from slotcache.ctl.value_view import jsonable, ttl_text, view

SDK = Values(MsgpackCodec())


@pytest.mark.parametrize(
    ("stored", "kind", "value"),
    [
        (b"hello", "text", "hello"),
        (b"41", "text", "41"),  # an incr counter: decimal text
        (b"two\nlines\t!", "text", "two\nlines\t!"),
        (b"\x00\x01\xff", "bytes", b"\x00\x01\xff"),
        (b"\x1b[31mred", "bytes", b"\x1b[31mred"),  # never sent raw to a terminal
        ({"name": "Ada", "langs": ["en", "fr"]}, "object", {"name": "Ada", "langs": ["en", "fr"]}),
        (42, "object", 42),
        ("a str", "object", "a str"),  # a msgpack string, not raw bytes: shown quoted
        (b"\xc1starts with the marker", "bytes", b"\xc1starts with the marker"),
    ],
)
def test_values_written_by_the_sdk(stored: object, kind: str, value: object) -> None:
    shown = view(SDK.dump(b"k", stored))
    assert (shown.kind, shown.value) == (kind, value)


def test_encrypted_and_undecodable_values() -> None:
    ring = Keyring({"k1": Keyring.generate_key()})
    sealed = Values(MsgpackCodec(), ring).dump(b"k", b"secret")
    assert view(sealed).kind == "encrypted" and view(sealed).value is None
    unknown = b"\xc1\x7fnot a format"
    assert (view(unknown).kind, view(unknown).value) == ("undecodable", unknown)


def test_json_carries_the_exact_bytes_and_a_readable_value() -> None:
    raw = SDK.dump(b"k", {"id": 7, b"\xff": b"\x00"})
    data = view(raw).as_json()
    assert base64.b64decode(data["base64"]) == raw
    assert data["type"] == "object" and data["size"] == len(raw)
    assert data["value"] == {"id": 7, "b'\\xff'": {"base64": "AA=="}}
    assert view(b"\x00").as_json()["value"] is None


def test_jsonable_keys_and_nesting() -> None:
    assert jsonable({1: [b"text", (2, 3)]}) == {"1": ["text", [2, 3]]}


def test_ttl_text() -> None:
    assert ttl_text(59_998) == "59,998 ms"
    assert ttl_text(-1) == "no TTL (the key does not expire)"
