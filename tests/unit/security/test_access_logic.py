"""The pure parts of the request-side checks: peers, certificate names, the ACL log."""

from __future__ import annotations

import pytest

from slotcache.contract import OPS
from slotcache_server.security.access import certificate_names, denied, is_loopback
from slotcache_server.security.acl import Denial, hash_token, parse_acl
from slotcache_server.security.acl_log import AclLog, Reason, peer_host


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.8.9.10:5000", True),
        ("ipv6:[::1]:5000", True),
        ("ipv6:[::ffff:127.0.0.1]:5000", True),
        ("unix:/tmp/s", True),
        ("ipv4:10.0.0.5:5000", False),
        ("ipv6:[fe80::1%eth0]:5000", False),
        ("ipv6:[::ffff:10.0.0.1]:5000", False),
        ("ipv4:0.0.0.0:1", False),
        ("garbage", False),
        ("", False),
    ],
)
def test_only_this_hosts_addresses_count_as_loopback(peer, loopback):
    assert is_loopback(peer) is loopback


class _Certified:
    def __init__(self, properties: dict[str, list[bytes]]) -> None:
        self.properties = properties

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.properties


def test_certificate_names_are_spelled_as_the_rules_spell_them():
    context = _Certified(
        {
            "x509_pem_cert": [b"-----BEGIN CERTIFICATE-----"],
            "x509_common_name": [b"ops.example.com"],
            "x509_subject_alternative_name": [b"ops.example.com", b"spiffe://x/ops"],
            "transport_security_type": [b"ssl"],
        }
    )
    assert certificate_names(context) == (
        "cn:ops.example.com",
        "san:ops.example.com",
        "san:spiffe://x/ops",
    )
    # Without a verified certificate gRPC gives no x509 properties: no names.
    assert certificate_names(_Certified({"transport_security_type": [b"ssl"]})) == ()


def test_a_denial_names_the_op_the_key_and_the_rule_but_no_secret():
    acl = parse_acl(f"user app on {hash_token('s3cret-token')} ~cache:* +@read")
    user = acl.users["app"]
    error = denied(user, Denial("set", b"other:1", "write"))
    assert error.code.name == "PERMISSION_DENIED"
    assert "'app'" in error.message and "set" in error.message and "other:1" in error.message
    assert "~cache:* +@read" in error.message
    assert hash_token("s3cret-token")[1:] not in error.message
    assert error.metadata == {"user": "app", "op": "set"}
    assert user.check(OPS["set"], [b"cache:1"]) is not None


def test_identical_refusals_within_a_minute_share_one_entry():
    log = AclLog(max_entries=10, group_ms=60_000)
    assert log.add(Reason.KEY, "app", "ipv4:10.0.0.5:1000", "set", b"k", 1_000)
    # Another connection from the same host, 59 s later: the same entry.
    assert not log.add(Reason.KEY, "app", "ipv4:10.0.0.5:2000", "set", b"k", 60_000)
    (entry,) = log.latest()
    assert (entry.count, entry.first_ms, entry.last_ms, entry.peer) == (
        2,
        1_000,
        60_000,
        "ipv4:10.0.0.5",
    )
    # A minute after the last one: a new entry.
    assert log.add(Reason.KEY, "app", "ipv4:10.0.0.5:2000", "set", b"k", 120_001)
    assert [e.count for e in log.latest()] == [1, 2]
    assert log.totals["key"] == 3


def test_the_log_keeps_the_most_recent_entries_newest_first():
    log = AclLog(max_entries=3)
    for i in range(10):
        log.add(Reason.AUTH, "", "ipv4:10.0.0.1:1", "Get", None, i)
    log.add(Reason.COMMAND, "u", "ipv4:10.0.0.1:1", "Shutdown", None, 10)
    for i in range(5):
        log.add(Reason.KEY, "u", "ipv4:10.0.0.1:1", "get", b"k%d" % i, 20 + i)
    assert len(log) == 3
    assert [e.key for e in log.latest()] == [b"k4", b"k3", b"k2"]
    assert [e.key for e in log.latest(1)] == [b"k4"]
    assert log.totals == {"auth": 10, "command": 1, "key": 5, "protected": 0}
    log.reset()
    assert log.latest() == [] and log.totals["key"] == 5


def test_long_keys_are_cut_in_the_log():
    log = AclLog()
    log.add(Reason.KEY, "u", "ipv4:10.0.0.1:1", "get", b"x" * 1000, 0)
    assert log.latest()[0].key == b"x" * 64


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.5:5000", "ipv4:10.0.0.5"),
        ("ipv6:[::1]:5000", "ipv6:[::1]"),
        ("unix:/tmp/s", "unix:/tmp/s"),
    ],
)
def test_peers_group_by_host(peer, host):
    assert peer_host(peer) == host
