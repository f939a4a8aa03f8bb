"""The hand-laid encoding of a SET's replication operation is protobuf's, byte for byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from slotcache_server.replication.ops import encode_set
from slotcache_server.wire import replication_pb2 as pb

# Lengths around each varint boundary, and deadlines up to the int64 edge.
_sizes = st.sampled_from([0, 1, 127, 128, 129, 16383, 16384, 70_000])
_deadlines = st.one_of(
    st.just(0), st.integers(1, 2**63 - 1), st.sampled_from([127, 128, 1_764_000_000_000])
)


def _protobuf(key: bytes, value: bytes, deadline: int) -> bytes:
    return pb.ReplOp(set=pb.SetOp(key=key, value=value, deadline_ms=deadline)).SerializeToString()


@given(st.binary(max_size=300), st.binary(max_size=300), _deadlines)
def test_encode_set_matches_protobuf(key: bytes, value: bytes, deadline: int) -> None:
    assert encode_set(key, value, deadline) == _protobuf(key, value, deadline)


@given(_sizes, _sizes, _deadlines)
def test_encode_set_matches_protobuf_at_varint_boundaries(
    key_len: int, value_len: int, deadline: int
) -> None:
    key, value = b"k" * key_len, b"v" * value_len
    encoded = encode_set(key, value, deadline)
    assert encoded == _protobuf(key, value, deadline)
    assert pb.ReplOp.FromString(encoded).set.value == value
