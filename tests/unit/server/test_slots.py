import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotcache.contract import SLOT_COUNT, hash_tag, key_slot


def test_crc16_is_xmodem():
    # The check value of CRC-16/XMODEM, which Redis Cluster uses.
    assert binascii.crc_hqx(b"123456789", 0) == 0x31C3


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        (b"somekey", 11058),
        (b"foo{hash_tag}", 2515),
        (b"bar{hash_tag}", 2515),
        (b"{user1000}.following", 3443),
        (b"{user1000}.followers", 3443),
    ],
)
def test_redis_reference_vectors(key, slot):
    assert key_slot(key) == slot


def test_hash_tag_rules():
    assert hash_tag(b"foo{hash_tag}") == b"hash_tag"
    # An empty tag means the whole key is hashed, even when a later tag exists.
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"
    assert key_slot(b"foo{}{bar}") == binascii.crc_hqx(b"foo{}{bar}", 0) % SLOT_COUNT
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")
    # Only the first "{" opens a tag; the first "}" after it closes it.
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert key_slot(b"foo{{bar}}zap") == binascii.crc_hqx(b"{bar", 0) % SLOT_COUNT
    assert hash_tag(b"foo{bar}{zap}") == b"bar"
    # No closing brace, or no opening brace: the whole key.
    assert hash_tag(b"foo{bar") == b"foo{bar"
    assert hash_tag(b"foo}bar{") == b"foo}bar{"
    assert hash_tag(b"") == b""
    assert key_slot(b"") == 0


@given(st.binary(max_size=64))
def test_slot_always_in_range_and_matches_crc(key):
    slot = key_slot(key)
    assert 0 <= slot < SLOT_COUNT
    assert slot == binascii.crc_hqx(hash_tag(key), 0) % SLOT_COUNT


_NO_BRACES = st.binary(max_size=16).filter(lambda b: b"{" not in b and b"}" not in b)
_NO_OPEN_BRACE = st.binary(max_size=16).filter(lambda b: b"{" not in b)


@given(
    tag=st.binary(min_size=1, max_size=16).filter(lambda b: b"}" not in b),
    prefix1=_NO_OPEN_BRACE,
    prefix2=_NO_OPEN_BRACE,
    suffix1=st.binary(max_size=16),
    suffix2=st.binary(max_size=16),
)
def test_keys_sharing_a_tag_share_a_slot(tag, prefix1, prefix2, suffix1, suffix2):
    key1 = prefix1 + b"{" + tag + b"}" + suffix1
    key2 = prefix2 + b"{" + tag + b"}" + suffix2
    assert hash_tag(key1) == tag
    assert key_slot(key1) == key_slot(key2) == key_slot(tag)


@given(_NO_BRACES)
def test_key_without_braces_hashes_whole_key(key):
    assert key_slot(key) == binascii.crc_hqx(key, 0) % SLOT_COUNT
