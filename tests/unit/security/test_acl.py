"""The ACL file, its key patterns and the per-operation checks, against Redis's semantics."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotcache.contract import OPS
from slotcache.v1 import cache_pb2 as pb
from slotcache_server.security.acl import (
    AclError,
    Credential,
    KeyMatcher,
    hash_token,
    parse_acl,
    parse_authorization,
)


def redis_match(p: bytes, s: bytes) -> bool:
    """Redis's ``stringmatchlen`` (util.c), transcribed: the reference for the globs."""
    while p and s:
        c = p[0]
        if c == ord("*"):
            while p[1:2] == b"*":
                p = p[1:]
            if len(p) == 1:
                return True
            return any(redis_match(p[1:], s[i:]) for i in range(len(s) + 1))
        if c == ord("?"):
            s = s[1:]
        elif c == ord("["):
            p = p[1:]
            negate = p[:1] == b"^"
            if negate:
                p = p[1:]
            match = False
            while True:
                if p[:1] == b"\\" and len(p) >= 2:
                    p = p[1:]
                    match = match or p[0] == s[0]
                elif p[:1] == b"]":
                    break
                elif not p:
                    p = b"]"  # Redis steps back so the outer step lands at the end
                    break
                elif len(p) >= 3 and p[1] == ord("-"):
                    lo, hi = sorted((p[0], p[2]))
                    p = p[2:]
                    match = match or lo <= s[0] <= hi
                else:
                    match = match or p[0] == s[0]
                p = p[1:]
            if negate:
                match = not match
            if not match:
                return False
            s = s[1:]
            p = p[1:]
            continue
        else:
            if c == ord("\\") and len(p) >= 2:
                p = p[1:]
            if p[0] != s[0]:
                return False
            s = s[1:]
        p = p[1:]
    if not s:
        p = p.lstrip(b"*")
    return not p and not s


GLOB = st.binary(max_size=8).map(lambda b: bytes(b"ab*?[]^-\\"[x % 9] for x in b))
KEY = st.binary(max_size=8).map(lambda b: bytes(b"ab-]^\\["[x % 7] for x in b))


@settings(max_examples=1500, deadline=None)
@given(GLOB, KEY)
def test_key_patterns_match_exactly_what_redis_matches(pattern, key):
    assert KeyMatcher.of([pattern])(key) == redis_match(pattern, key)


@settings(max_examples=500, deadline=None)
@given(st.lists(GLOB, max_size=4), KEY)
def test_several_patterns_match_a_key_any_of_them_matches(patterns, key):
    assert KeyMatcher.of(patterns)(key) == any(redis_match(p, key) for p in patterns)


def test_literal_and_prefix_patterns_skip_the_regex_engine():
    matcher = KeyMatcher.of([b"cache:*", b"exact", b"user:?"])
    assert matcher.prefixes == (b"cache:",)
    assert matcher.exact == {b"exact"}
    assert matcher.regex is not None
    assert matcher(b"cache:1") and matcher(b"exact") and matcher(b"user:7")
    assert not matcher(b"exact2") and not matcher(b"user:77") and not matcher(b"cach")
    assert KeyMatcher.of([b"a*", b"*"]).every


TOKEN_A = "token-of-alice"
TOKEN_R = "token-of-reader"
FILE = f"""
# users of a test cluster
user alice on {hash_token(TOKEN_A)} ~cache:* %R~public:* +@read +@write
user reader on {hash_token(TOKEN_R)} %R~* +@read -ttl
user ops on cn:ops.example.com ~* +@all
user writer on #{hashlib.sha256(b"w").hexdigest()} %W~logs:* +@write
user gone off #{hashlib.sha256(b"g").hexdigest()} ~* +@all
user default on nopass %R~public:* +get
"""


@pytest.fixture
def acl():
    return parse_acl(FILE)


def test_a_read_only_user_reads_any_key_and_writes_none(acl):
    reader = acl.users["reader"]
    assert reader.check(OPS["get"], [b"anything"]) is None
    assert reader.check(OPS["mget"], [b"a", b"b"]) is None
    denial = reader.check(OPS["set"], [b"anything"])
    assert denial is not None and denial.op == "set" and denial.key is None
    # A single operation taken away from its category.
    assert reader.check(OPS["ttl"], [b"a"]) is not None
    assert not reader.admin


def test_key_patterns_narrow_reads_and_writes_separately(acl):
    alice = acl.users["alice"]
    assert alice.check(OPS["set"], [b"cache:1"]) is None
    assert alice.check(OPS["get"], [b"public:x"]) is None
    denied = alice.check(OPS["set"], [b"public:x"])
    assert denied is not None and (denied.key, denied.access) == (b"public:x", "write")
    # A multi-key operation is refused by its first key outside the patterns.
    denied = alice.check(OPS["mget"], [b"cache:1", b"public:2", b"other"])
    assert denied is not None and denied.key == b"other"
    denied = alice.check(OPS["mset"], [b"cache:1", b"public:2"])
    assert denied is not None and denied.key == b"public:2"


def test_incr_also_needs_read_access_since_it_returns_the_value(acl):
    writer = acl.users["writer"]
    assert writer.check(OPS["set"], [b"logs:1"]) is None
    denied = writer.check(OPS["incr"], [b"logs:1"])
    assert denied is not None and denied.access == "read"


def test_users_allowed_every_key_need_no_key_check(acl):
    assert acl.users["ops"].unrestricted and acl.users["ops"].admin
    assert acl.users["reader"].free == {op for op, spec in OPS.items() if not spec.writes} - {"ttl"}
    assert not acl.users["alice"].unrestricted


def test_the_rule_shown_in_errors_holds_no_secret_and_no_certificate_name(acl):
    assert acl.users["alice"].rule == "on ~cache:* %R~public:* +@read +@write"
    assert acl.users["ops"].rule == "on ~* +@all"


def test_tokens_and_passwords_authenticate_only_their_enabled_user(acl):
    by_token = parse_authorization(f"Bearer {TOKEN_A}")
    assert by_token is not None and acl.authenticate(by_token) is acl.users["alice"]
    basic = base64.b64encode(f"reader:{TOKEN_R}".encode()).decode()
    by_password = parse_authorization(f"Basic {basic}")
    assert by_password == Credential("reader", hashlib.sha256(TOKEN_R.encode()).hexdigest())
    assert acl.authenticate(by_password) is acl.users["reader"]
    # Another user's token, an unknown user, a disabled one: all simply None.
    assert acl.authenticate(Credential("alice", by_password.digest)) is None
    assert acl.authenticate(Credential("nobody", by_password.digest)) is None
    gone = Credential("", hashlib.sha256(b"g").hexdigest())
    assert acl.authenticate(gone) is None
    assert acl.anonymous is acl.users["default"]


@pytest.mark.parametrize(
    "value", ["", "Bearer", "Bearer ", "Token abc", "Basic !!!", "Basic " + "bm9jb2xvbg=="]
)
def test_malformed_authorization_is_no_credential(value):
    assert parse_authorization(value) is None


def test_a_certificate_maps_to_the_one_user_naming_it(acl):
    assert acl.for_certificate(["cn:ops.example.com", "san:x"]) is acl.users["ops"]
    assert acl.for_certificate(["cn:someone.else"]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user a on >secret ~* +@all", "plaintext passwords are not accepted"),
        ("user a on #abc", "64 hex digits"),
        ("user a on nopass", "nopass is only for the user 'default'"),
        ("user a on +@everything", "unknown permission '@everything'"),
        ("user a on frobnicate", "unknown rule 'frobnicate'"),
        ("user a on %X~foo", "the access before ~ is %R, %W or %RW"),
        ("user a on\nuser a off", "defined twice"),
        ("user a on #" + "0" * 64 + "\nuser b on #" + "0" * 64, "shares a token with 'a'"),
        ("group a", "expected 'user <name> <rules...>'"),
        ("user bad/name on", "is not a user name"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(text, message):
    with pytest.raises(AclError) as err:
        parse_acl(text, "users.acl")
    assert message in str(err.value)
    assert "users.acl:" in str(err.value)


def test_a_refused_plaintext_password_is_not_repeated_in_the_error():
    with pytest.raises(AclError) as err:
        parse_acl("user a on >hunter2 ~* +@all")
    assert "hunter2" not in str(err.value)


def test_rules_apply_left_to_right():
    acl = parse_acl("user a on ~x* resetkeys ~y* +@all -@admin -set nocommands +get")
    user = acl.users["a"]
    assert user.ops == {"get"} and not user.admin
    assert user.check(OPS["get"], [b"y1"]) is None
    assert user.check(OPS["get"], [b"x1"]) is not None


def _request(name: str, keys: list[bytes]):
    op = OPS[name]
    if name == "mset":
        return pb.MSetRequest(entries=[pb.SetRequest(key=k) for k in keys])
    if op.multi is not None:
        return getattr(pb, f"{op.rpc}Request")(keys=keys)
    return getattr(pb, f"{op.rpc}Request")(key=keys[0])


RULES = st.lists(
    st.sampled_from(
        ["~a*", "%R~b*", "%W~ab", "%RW~a?", "~[ab]b", "+@read", "+@write", "-get", "+incr"]
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(RULES, st.sampled_from(sorted(OPS)), st.lists(KEY.filter(bool), min_size=1, max_size=3))
def test_the_fast_per_op_check_agrees_with_the_full_check(rules, name, keys):
    user = parse_acl("user u on " + " ".join(rules)).users["u"]
    spec = OPS[name]
    keys = keys if spec.multi is not None else keys[:1]
    request = _request(name, keys)
    full = user.check(spec, spec.keys(request)) is None
    fast = user.checks.get(name, False)
    if fast is None:
        assert full and name in user.free
    elif fast is False:
        assert not full
    else:
        assert fast(request) == full
