"""Protected mode with a real non-loopback client (see tests/support/netns.py)."""

from __future__ import annotations

from pathlib import Path

from slotcache.v1 import cache_pb2 as pb
from tests.support.acl import Stubs
from tests.support.netns import namespace_link, server_on_all_addresses

# The client, run inside the namespace: one Get, its status printed as JSON.
CLIENT = """
import json, sys, grpc
from slotcache.v1 import cache_pb2, cache_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    try:
        cache_pb2_grpc.CacheStub(channel).Get(cache_pb2.GetRequest(key=b"k"), timeout=10)
        print(json.dumps({"code": "OK", "details": ""}))
    except grpc.RpcError as exc:
        print(json.dumps({"code": exc.code().name, "details": exc.details()}))
"""


def test_protected_mode_refuses_a_non_loopback_client_and_serves_loopback(tmp_path: Path):
    with namespace_link() as link:
        with server_on_all_addresses(tmp_path / "protected") as server:
            refused = link.run(CLIENT, f"{link.host_ip}:{server.port}")
            with Stubs(f"127.0.0.1:{server.port}") as local:
                assert not local.call(local.cache, "Get", pb.GetRequest(key=b"k")).found
        assert refused["code"] == "PERMISSION_DENIED"
        assert "protected mode" in refused["details"]
        assert "--protected-mode no" in refused["details"]
        assert "--acl-file" in refused["details"]
        with server_on_all_addresses(tmp_path / "open", "--protected-mode", "no") as server:
            assert link.run(CLIENT, f"{link.host_ip}:{server.port}")["code"] == "OK"
