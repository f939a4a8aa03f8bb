"""The node-authentication token: signing, checking, replays and the time window."""

from __future__ import annotations

import itertools

import pytest

from slotcache_server.security.node_auth import (
    METADATA_KEY,
    NODE_CERT_URI,
    LogLimiter,
    NodeAuth,
    Refusal,
    ReplayGuard,
    Token,
    sign,
    verify,
)

SECRET = b"a" * 40
OTHER = b"b" * 40
ME = bytes(range(20))
PEER = bytes(range(1, 21))
METHOD = "/slotcache.v1.Bus/Exchange"


class Clock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def pair(
    clock: Clock, receiver_secrets: tuple[bytes, ...] = (SECRET,), **kwargs: object
) -> tuple[NodeAuth, NodeAuth]:
    """A signer and a checker sharing ``clock``; nonces count up so tests can reuse them."""
    counter = itertools.count()
    sender = NodeAuth(
        lambda: (SECRET,), node_id=PEER, clock_ms=clock, nonce=lambda: f"n{next(counter)}"
    )
    receiver = NodeAuth(lambda: receiver_secrets, node_id=ME, clock_ms=clock, **kwargs)  # type: ignore[arg-type]
    return sender, receiver


def test_sign_is_deterministic_and_binds_every_field():
    base = sign(SECRET, METHOD, b"body", 1, "n", "aud")
    assert base == sign(SECRET, METHOD, b"body", 1, "n", "aud")
    variants = {
        sign(OTHER, METHOD, b"body", 1, "n", "aud"),
        sign(SECRET, "/other", b"body", 1, "n", "aud"),
        sign(SECRET, METHOD, b"bodY", 1, "n", "aud"),
        sign(SECRET, METHOD, b"body", 2, "n", "aud"),
        sign(SECRET, METHOD, b"body", 1, "m", "aud"),
        sign(SECRET, METHOD, b"body", 1, "n", "aux"),
        # A field's end moved into the next one must not give the same MAC.
        sign(SECRET, METHOD, b"body", 1, "na", "ud"),
    }
    assert base not in variants
    assert len(variants) == 7


def test_verify_accepts_any_listed_secret_and_nothing_else():
    token = Token(5, "n", "", sign(OTHER, METHOD, b"x", 5, "n"))
    assert verify((SECRET, OTHER), METHOD, b"x", token)
    assert not verify((SECRET,), METHOD, b"x", token)
    assert not verify((SECRET, OTHER), METHOD, b"y", token)


def test_token_round_trip_and_garbage():
    token = Token(123, "abc-_", "00ff", "mac")
    assert Token.parse(token.encode()) == token
    for text in ("", "v1.1.2.3", "v2.1.n..m", "v1.x.n..m", "v1.1.n..m.extra"):
        assert Token.parse(text) is None


def test_replay_guard_refuses_replays_and_stale_timestamps():
    guard = ReplayGuard(window_ms=1000, capacity=100)
    assert guard.admit(10_000, "a", 10_000) is None
    assert guard.admit(10_000, "a", 10_500) is Refusal.REPLAYED
    assert guard.admit(8_999, "b", 10_000) is Refusal.STALE
    assert guard.admit(11_001, "c", 10_000) is Refusal.STALE
    # Skew inside the window either way is fine.
    assert guard.admit(9_000, "d", 10_000) is None
    assert guard.admit(11_000, "e", 10_000) is None
    # Once the window has passed, the nonce is forgotten but the timestamp refuses it.
    assert guard.admit(10_000, "a", 11_001) is Refusal.STALE
    assert len(guard) == 1


def test_replay_guard_stays_bounded_and_safe_when_full():
    guard = ReplayGuard(window_ms=60_000, capacity=3)
    for i, nonce in enumerate("abcd"):
        assert guard.admit(1000 + i, nonce, 1000) is None
    assert len(guard) == 3
    # "a" was forgotten to make room: its replay is refused by the raised floor.
    assert guard.floor == 1000
    assert guard.admit(1000, "a", 1000) is Refusal.STALE
    assert guard.admit(1010, "z", 1000) is None
    assert len(guard) == 3


def test_member_call_accepted_once():
    clock = Clock()
    sender, receiver = pair(clock)
    metadata = sender.call_metadata(METHOD, b"msg", ME)
    assert metadata[0][0] == METADATA_KEY
    assert receiver.check(metadata, METHOD, b"msg", {}) is None
    assert receiver.check(metadata, METHOD, b"msg", {}) is Refusal.REPLAYED


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ("nothing sent", Refusal.MISSING),
        ("garbled", Refusal.MALFORMED),
        ("body", Refusal.BAD_MAC),
        ("method", Refusal.BAD_MAC),
        ("other node", Refusal.WRONG_NODE),
        ("late", Refusal.STALE),
    ],
)
def test_non_member_calls_are_refused(change: str, refusal: Refusal):
    clock = Clock()
    sender, receiver = pair(clock)
    audience = PEER if change == "other node" else ME
    metadata: tuple[tuple[str, str], ...] = sender.call_metadata(METHOD, b"msg", audience)
    method, body = METHOD, b"msg"
    if change == "nothing sent":
        metadata = ()
    elif change == "garbled":
        metadata = ((METADATA_KEY, "v1.not-a-token"),)
    elif change == "body":
        body = b"msh"
    elif change == "method":
        method = "/slotcache.v1.Replication/Replicate"
    elif change == "late":
        clock.now_ms += 30_001
    assert receiver.check(metadata, method, body, {}) is refusal


def test_wrong_secret_refused_and_rotation_accepts_both():
    clock = Clock()
    sender, receiver = pair(clock, receiver_secrets=(OTHER,))
    assert receiver.check(sender.call_metadata(METHOD), METHOD, b"", {}) is Refusal.BAD_MAC
    _, rotating = pair(clock, receiver_secrets=(OTHER, SECRET))
    assert rotating.check(sender.call_metadata(METHOD), METHOD, b"", {}) is None


def test_a_forgotten_mac_check_cannot_fill_the_nonce_cache():
    clock = Clock()
    guard = ReplayGuard()
    _, receiver = pair(clock, guard=guard)
    forged = Token(clock.now_ms, "n", "", "bad").encode()
    for _ in range(10):
        assert receiver.check(((METADATA_KEY, forged),), METHOD, b"", {}) is Refusal.BAD_MAC
    assert len(guard) == 0


def test_node_certificates():
    auth = NodeAuth(node_certs=True)
    node = {"peer_uri": [NODE_CERT_URI.encode()], "x509_common_name": [b"n1"]}
    client = {"peer_uri": [b"urn:slotcache:client"], "x509_common_name": [b"n1"]}
    assert auth.check((), METHOD, b"", node) is None
    assert auth.check((), METHOD, b"", client) is Refusal.NOT_NODE_CERT
    assert auth.check((), METHOD, b"", {}) is Refusal.NOT_NODE_CERT
    # Both configured: a node certificate and a valid token are both required.
    clock = Clock()
    both = NodeAuth(lambda: (SECRET,), node_certs=True, node_id=ME, clock_ms=clock)
    sender, _ = pair(clock)
    assert both.check((), METHOD, b"", node) is Refusal.MISSING
    assert both.check(sender.call_metadata(METHOD), METHOD, b"", node) is None


def test_without_configuration_every_call_is_accepted_and_nothing_is_sent():
    auth = NodeAuth()
    assert not auth.enabled
    assert auth.call_metadata(METHOD, b"x") == ()
    assert auth.check((), METHOD, b"x", {}) is None


def test_refusals_are_counted_and_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture):
    now = [0.0]
    auth = NodeAuth(lambda: (SECRET,), limiter=LogLimiter(10.0, lambda: now[0]))
    for _ in range(5):
        auth.note_refusal(Refusal.BAD_MAC, METHOD, "ipv4:127.0.0.1:1")
    now[0] = 11.0
    auth.note_refusal(Refusal.BAD_MAC, METHOD, "ipv4:127.0.0.1:1")
    assert auth.refused["bad_mac"] == 6
    assert auth.refused_total == 6
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "4 more refused" in lines[1]
    assert all(SECRET.decode() not in line for line in lines)


class FakeContext:
    """Just enough of a servicer context for the answering side."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_an_answer_is_believed_only_for_the_call_it_answers():
    clock = Clock()
    caller, callee = pair(clock)
    first = caller.call_metadata(METHOD, b"ping", ME)
    second = caller.call_metadata(METHOD, b"ping", ME)
    answer = callee.reply_metadata(FakeContext(first), METHOD, b"pong")  # type: ignore[arg-type]
    assert caller.check_reply(first, answer, METHOD, b"pong") is None
    # Not for another call, not for another body, not as a call itself.
    assert caller.check_reply(second, answer, METHOD, b"pong") is Refusal.REPLAYED
    assert caller.check_reply(first, answer, METHOD, b"pwned") is Refusal.BAD_MAC
    assert callee.check(answer, METHOD, b"pong", {}) is Refusal.BAD_MAC
    assert caller.check_reply(first, (), METHOD, b"pong") is Refusal.MISSING
    clock.now_ms += 30_001
    assert caller.check_reply(first, answer, METHOD, b"pong") is Refusal.STALE


def test_an_answer_from_a_stranger_is_refused_and_counted():
    clock = Clock()
    caller, _ = pair(clock)
    stranger = NodeAuth(lambda: (OTHER,), clock_ms=clock)
    sent = caller.call_metadata(METHOD, b"meet")
    answer = stranger.reply_metadata(FakeContext(sent), METHOD, b"pong")  # type: ignore[arg-type]
    assert not caller.is_member_reply(sent, answer, METHOD, b"pong", "127.0.0.1:1")
    assert caller.refused["bad_mac"] == 1


def test_of_several_tokens_the_one_signed_over_this_body_is_checked():
    clock = Clock()
    sender, receiver = pair(clock)
    relaying = sender.call_metadata(METHOD, b"", ME)
    vouching = sender.call_metadata(METHOD, b"user:alice", ME)
    both = relaying + vouching
    assert receiver.check(both, METHOD, b"user:alice", {}) is None
    assert receiver.check(both, METHOD, b"", {}) is None
    assert receiver.check(both, METHOD, b"user:alice", {}) is Refusal.REPLAYED
    assert receiver.check(both, METHOD, b"user:mallory", {}) is Refusal.BAD_MAC
