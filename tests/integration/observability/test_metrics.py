"""A real node under a known load, scraped over HTTP: counters move by exactly what was done."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import grpc
import pytest

from slotcache.contract import key_slot
from slotcache.ctl.launcher import LOOPBACK, free_port, server_command
from slotcache.ctl.rpc import NodeHandle
from slotcache.v1 import admin_pb2, cache_pb2_grpc
from slotcache.v1 import cache_pb2 as pb
from tests.integration.server.conftest import PipelineStream
from tests.support.nodes import CHANNEL_OPTIONS
from tests.support.processes import Cluster, ServerFactory

from .scrape import delta, metrics_port, scrape, value

GETS = 300
MISSES = 47
CALLS = "rpc_server_call_duration_seconds_count"


@pytest.fixture
def node(servers: ServerFactory):
    server = servers("--metrics-port", str(free_port()), "--max-key-bytes", "32")
    with grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS) as channel:
        yield server, cache_pb2_grpc.CacheStub(channel)


def test_gets_hits_and_misses_move_by_exactly_the_load(node) -> None:
    server, stub = node
    port = metrics_port(server)
    hits = GETS - MISSES
    for i in range(hits):
        stub.Set(pb.SetRequest(key=b"k%d" % i, value=b"v"))
    before = scrape(port)
    for i in range(hits):
        assert stub.Get(pb.GetRequest(key=b"k%d" % i)).found
    for i in range(MISSES):
        assert not stub.Get(pb.GetRequest(key=b"absent%d" % i)).found
    after = scrape(port)
    assert delta(before, after, "slotcache_keyspace_hits_total") == hits
    assert delta(before, after, "slotcache_keyspace_misses_total") == MISSES
    get_ok = {"rpc_method": "Get", "rpc_response_status_code": "OK"}
    assert delta(before, after, CALLS, **get_ok) == GETS
    # Buckets are cumulative: the +Inf bucket holds every call.
    buckets = "rpc_server_call_duration_seconds_bucket"
    assert delta(before, after, buckets, le="+Inf", **get_ok) == GETS
    assert delta(before, after, buckets, le="10.0", **get_ok) == GETS
    assert (
        delta(before, after, "slotcache_network_io_bytes_total", network_io_direction="receive") > 0
    )
    assert value(after, "slotcache_keyspace_keys") == hits

    # Inside a Pipeline message every operation counts, per operation.
    stream = PipelineStream(stub, timeout=30)
    stream.send(
        *(pb.Operation(id=i, get=pb.GetRequest(key=b"k%d" % i)) for i in range(5)),
        *(pb.Operation(id=10 + i, set=pb.SetRequest(key=b"p%d" % i, value=b"v")) for i in range(3)),
    )
    piped = scrape(port)
    assert delta(after, piped, CALLS, **get_ok) == 5
    assert delta(after, piped, CALLS, rpc_method="Set", rpc_response_status_code="OK") == 3
    assert delta(after, piped, "slotcache_keyspace_hits_total") == 5
    assert value(piped, "slotcache_streams_open", slotcache_stream="pipeline") == 1
    assert stream.close() == grpc.StatusCode.OK


def test_an_error_moves_its_code_and_reason_series(node) -> None:
    server, stub = node
    port = metrics_port(server)
    stub.Set(pb.SetRequest(key=b"text", value=b"not a number"))
    before = scrape(port)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            stub.Incr(pb.IncrRequest(key=b"text", delta=1))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as err:
            stub.Get(pb.GetRequest(key=b"x" * 33))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = scrape(port)
    incr = {"rpc_method": "Incr", "rpc_response_status_code": "FAILED_PRECONDITION"}
    assert delta(before, after, CALLS, **incr) == 3
    assert (
        delta(before, after, "slotcache_server_errors_total", error_type="NOT_INTEGER", **incr) == 3
    )
    bad = {"rpc_method": "Get", "rpc_response_status_code": "INVALID_ARGUMENT"}
    assert delta(before, after, CALLS, **bad) == 2
    assert delta(before, after, "slotcache_server_errors_total", **bad) == 2
    assert delta(before, after, CALLS, rpc_method="Get", rpc_response_status_code="OK") == 0


def test_metrics_port_zero_serves_no_endpoint(servers: ServerFactory) -> None:
    server = servers("--metrics-port", "0")
    assert metrics_port(server) == 0


def _wait_for(port: int, timeout_s: float, **expected: float) -> dict:
    """Scrape until every ``name=value`` holds (names use __ for a state label)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = scrape(port)
        got = {key: _read(now, key) for key in expected}
        if got == expected or time.monotonic() > deadline:
            assert got == expected
            return now
        time.sleep(0.05)


def _read(samples, key: str) -> float:
    name, _, state = key.partition("__")
    return value(samples, name, state=state) if state else value(samples, name)


def test_stopped_nodes_show_pfail_then_fail(servers: ServerFactory) -> None:
    """Two of three primaries stop: no majority, so PFAIL stays; one comes back: FAIL."""
    cluster = Cluster.start(servers, 3, 1000)
    port = metrics_port(cluster.nodes[0])
    assert port, "the automatic metrics port (client port + 1000) was taken"
    _wait_for(
        port,
        5,
        slotcache_cluster_state=1,
        slotcache_cluster_known_nodes=3,
        slotcache_cluster_slots__ok=16384,
    )
    # The bus is counted both ways: pings out, and peers' pings and pongs in.
    first = scrape(port)
    time.sleep(0.5)
    later = scrape(port)
    for direction in ("transmit", "receive"):
        for name in ("slotcache_gossip_messages_total", "slotcache_gossip_io_bytes_total"):
            assert value(first, name, direction=direction) > 0, (name, direction)
            assert delta(first, later, name, direction=direction) > 0, (name, direction)
    cluster.nodes[1].send_signal(signal.SIGSTOP)
    cluster.nodes[2].send_signal(signal.SIGSTOP)
    _wait_for(
        port,
        10,
        slotcache_cluster_nodes_failing__pfail=2,
        slotcache_cluster_nodes_failing__fail=0,
    )
    cluster.nodes[1].send_signal(signal.SIGCONT)
    now = _wait_for(
        port,
        15,
        slotcache_cluster_nodes_failing__pfail=0,
        slotcache_cluster_nodes_failing__fail=1,
        slotcache_cluster_state=0,
    )
    assert value(now, "slotcache_cluster_slots", state="fail") in (5461, 5462)


def test_an_explicit_metrics_port_that_is_taken_stops_the_start(tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = subprocess.run(
            [
                *server_command(),
                "--port",
                str(free_port()),
                "--metrics-port",
                str(taken),
                "--data-dir",
                str(tmp_path),
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("SLOTCACHE_")},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    assert "cannot serve metrics" in result.stderr
    assert "Traceback" not in result.stderr


def test_slot_stats_count_the_operations_of_each_slot(servers: ServerFactory) -> None:
    """On a node that routes (it owns part of the slots); one that owns all hashes no keys."""
    cluster = Cluster.start(servers, 2, 1000)
    key = next(b"k%d" % i for i in range(10_000) if key_slot(b"k%d" % i) < 8192)
    slot = key_slot(key)
    with grpc.insecure_channel(cluster.addresses[0], options=CHANNEL_OPTIONS) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        stub.Set(pb.SetRequest(key=key, value=b"v"))
        for _ in range(9):
            stub.Get(pb.GetRequest(key=key))
    with NodeHandle.open(cluster.addresses[0], 5.0) as admin:
        reply = admin.call(
            "SlotStats", admin_pb2.SlotStatsRequest(ranges=[pb.SlotRange(start=slot, end=slot)])
        )
    (stat,) = reply.slots  # type: ignore[attr-defined]
    assert (stat.slot, stat.keys, stat.ops) == (slot, 1, 10)
