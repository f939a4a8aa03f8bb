"""RESP commands land in the same metrics and access log as gRPC calls, labelled by protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
import redis

from slotcache.ctl.launcher import LOOPBACK, free_port
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc
from tests.integration.observability.scrape import delta, scrape
from tests.support.processes import ServerFactory
from tests.support.resp import resp_flags

CALLS = "rpc_server_call_duration_seconds_count"


def test_resp_and_grpc_calls_are_counted_apart_by_protocol(
    servers: ServerFactory, tmp_path: Path
) -> None:
    metrics, resp = free_port(), free_port()
    log = tmp_path / "access.log"
    server = servers(
        *resp_flags(resp),
        "--metrics-port",
        str(metrics),
        "--access-log",
        str(log),
        "--access-log-sample",
        "1",
    )
    before = scrape(metrics)
    with redis.Redis(LOOPBACK, resp) as r:
        r.set("m:k", "v")
        for _ in range(40):
            assert r.get("m:k") == b"v"
        pipe = r.pipeline(transaction=False)
        for _ in range(60):
            pipe.get("m:absent")
        assert pipe.execute() == [None] * 60
        with pytest.raises(redis.ResponseError):
            r.incr("m:k")
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        for _ in range(7):
            stub.Get(pb.GetRequest(key=b"m:k"))
    after = scrape(metrics)
    get_resp = {"rpc_method": "Get", "rpc_response_status_code": "OK"}
    assert delta(before, after, CALLS, network_protocol_name="resp", **get_resp) == 100
    assert delta(before, after, CALLS, network_protocol_name="grpc", **get_resp) == 7
    errors = "slotcache_server_errors_total"
    incr = {"rpc_method": "Incr", "error_type": "NOT_INTEGER"}
    assert delta(before, after, errors, network_protocol_name="resp", **incr) == 1
    assert delta(before, after, "slotcache_keyspace_misses_total") == 60
    deadline = time.monotonic() + 5
    entries: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        if log.exists():
            entries = [json.loads(line) for line in log.read_text().splitlines()]
        if sum(1 for e in entries if e["op"] == "Get") >= 107:
            break
        time.sleep(0.1)
    resp_gets = [e for e in entries if e["op"] == "Get" and e.get("protocol") == "resp"]
    grpc_gets = [e for e in entries if e["op"] == "Get" and "protocol" not in e]
    assert len(resp_gets) == 100 and len(grpc_gets) == 7
    assert any(
        e["status"] == "FAILED_PRECONDITION" and e.get("protocol") == "resp" for e in entries
    )
