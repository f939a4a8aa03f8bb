"""Who a forwarded call is checked as, and when a node believes the name it carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from slotcache_server.executor import CommandError
from slotcache_server.security.access import FORWARDED_USER_KEY, Access, cache_method
from slotcache_server.security.acl import hash_token, token_credential
from slotcache_server.security.node_auth import NodeAuth

TOKEN = "alice-token"
USERS = f"""
user alice on {hash_token(TOKEN)} ~a:* +@read +@write
user ops on cn:ops.example.com ~* +@all
"""
METHOD = cache_method("Get")


@dataclass
class FakeContext:
    """What Access reads of a gRPC call."""

    metadata: tuple[tuple[str, str], ...] = ()
    peer_text: str = "ipv4:10.1.2.3:4000"
    auth: dict[str, list[bytes]] = field(default_factory=dict)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        return self.peer_text

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def _access(tmp_path: Path, node_auth: NodeAuth | None, text: str = USERS) -> Access:
    path = tmp_path / "users.acl"
    path.write_text(text)
    access = Access(path, protected_mode=True, node_auth=node_auth)
    access.load()
    return access


def _shared_secret() -> NodeAuth:
    return NodeAuth(secrets=lambda: [b"cluster-secret"])


def _refused(access: Access, context: FakeContext) -> CommandError:
    with pytest.raises(CommandError) as err:
        access.caller(context, METHOD)
    return err.value


def test_a_token_caller_is_forwarded_with_its_own_header(tmp_path):
    access = _access(tmp_path, None)
    header = ("authorization", f"Bearer {TOKEN}")
    caller = access.caller(FakeContext((header,)), METHOD)
    assert caller is not None and caller.user.name == "alice"
    assert access.forwarding(caller, "Get") == (header,)
    assert TOKEN not in repr(caller)


def test_a_certificate_user_is_vouched_for_by_node_authentication(tmp_path):
    entry, owner = _access(tmp_path, _shared_secret()), _access(tmp_path, _shared_secret())
    cert = {"x509_pem_cert": [b"pem"], "x509_common_name": [b"ops.example.com"]}
    caller = entry.caller(FakeContext(auth=cert), METHOD)
    assert caller is not None and caller.user.name == "ops"
    forwarded = entry.forwarding(caller, "Get")
    assert forwarded[0] == (FORWARDED_USER_KEY, "ops")
    # The owner believes the name from a member (no certificate of its own on this hop).
    seen = owner.caller(FakeContext(forwarded), METHOD)
    assert seen is not None and seen.user.name == "ops"
    # Played again, the token is refused, and nothing else proves anyone.
    assert _refused(owner, FakeContext(forwarded)).code == grpc.StatusCode.UNAUTHENTICATED
    # The token is bound to the name: another name with it proves nothing.
    renamed = ((FORWARDED_USER_KEY, "alice"), *entry.forwarding(caller, "Get")[1:])
    assert _refused(owner, FakeContext(renamed)).code == grpc.StatusCode.UNAUTHENTICATED


def test_without_node_authentication_a_claimed_name_is_ignored(tmp_path):
    access = _access(tmp_path, NodeAuth())  # no secret, no node certificates
    caller = access.caller(
        FakeContext(auth={"x509_pem_cert": [b"pem"], "x509_common_name": [b"ops.example.com"]}),
        METHOD,
    )
    assert caller is not None
    assert access.forwarding(caller, "Get") == ()  # cannot vouch: the owner will refuse
    claimed = FakeContext(((FORWARDED_USER_KEY, "ops"),))
    assert _refused(access, claimed).code == grpc.StatusCode.UNAUTHENTICATED


def test_protected_mode_serves_loopback_and_members_only(tmp_path):
    member = _shared_secret()
    access = Access(None, protected_mode=True, node_auth=member)
    assert access.caller(FakeContext(peer_text="ipv4:127.0.0.1:5"), METHOD) is None
    refused = _refused(access, FakeContext())
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert "--protected-mode no" in refused.message
    proof = _shared_secret().call_metadata(METHOD)
    assert access.caller(FakeContext(proof), METHOD) is None
    assert access.log.totals["protected"] == 1


def test_a_reload_revokes_an_open_streams_caller(tmp_path):
    access = _access(tmp_path, None)
    header = ("authorization", f"Bearer {TOKEN}")
    caller = access.caller(FakeContext((header,)), METHOD)
    assert caller is not None
    assert access.current(caller) is caller  # no reload: nothing is looked up
    (tmp_path / "users.acl").write_text("user alice on ~* +@all\n")  # the token is gone
    assert access.reload()[0]
    with pytest.raises(CommandError) as err:
        access.current(caller)
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    # A bad file changes nothing.
    (tmp_path / "users.acl").write_text("user broken on >x\n")
    ok, message = access.reload()
    assert not ok and "stay in force" in message and access.acl is not None
    assert "alice" in access.acl.users


def test_protected_mode_serves_clients_with_a_verified_certificate(tmp_path):
    access = Access(None, protected_mode=True)
    with_cert = FakeContext(
        auth={"x509_pem_cert": [b"pem"], "x509_common_name": [b"app.example.com"]}
    )
    assert access.caller(with_cert, METHOD) is None
    assert _refused(access, FakeContext()).code == grpc.StatusCode.PERMISSION_DENIED


def test_a_token_proven_without_a_header_is_vouched_for(tmp_path):
    """RESP AUTH keeps only the token's hash: its user is vouched for, as a certificate's."""
    entry, owner = _access(tmp_path, _shared_secret()), _access(tmp_path, _shared_secret())
    caller = entry.login(token_credential("alice", TOKEN), "ipv4:10.1.2.3:4000")
    assert caller is not None and not caller.authorization
    forwarded = entry.forwarding(caller, "Get")
    assert forwarded[0] == (FORWARDED_USER_KEY, "alice")
    seen = owner.caller(FakeContext(forwarded), METHOD)
    assert seen is not None and seen.user.name == "alice"
    assert TOKEN not in repr(forwarded)
