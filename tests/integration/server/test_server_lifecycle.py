"""The server as a process: health, reflection, counters, signals, configuration, startup errors."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from slotcache.ctl.launcher import LOOPBACK, free_port, server_command, wait_serving
from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2_grpc
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_status(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def info(channel: grpc.Channel) -> admin_pb2.InfoReply:
    return admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=5)


def stats(channel: grpc.Channel) -> dict[str, int]:
    return dict(info(channel).stats)


def delta(before: dict[str, int], after: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


# ---- health and reflection ----------------------------------------------------------


@pytest.mark.parametrize("service", ["", "slotcache.v1.Cache", "slotcache.v1.Admin"])
def test_health_reports_serving(channel, service):
    assert health_status(channel, service) == SERVING


def test_health_unknown_service_is_not_found(channel):
    with pytest.raises(grpc.RpcError) as info_:
        health_status(channel, "no.such.Service")
    assert info_.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="slotcache.v1.Cache"),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {"slotcache.v1.Cache", "slotcache.v1.Admin", "grpc.health.v1.Health"} <= names
    # A tool like grpcurl can fetch the schema, not just the names.
    files = described.file_descriptor_response.file_descriptor_proto
    assert files, described
    assert any(b"slotcache/v1/cache.proto" in f for f in files)


# ---- Admin.Info --------------------------------------------------------------------------


def test_info_identity(channel, server):
    reply = info(channel)
    assert reply.server["address"] == server.address
    assert reply.server["pid"] == str(server.pid)
    assert reply.server["maxmemory_policy"] == "noeviction"
    assert reply.server["version"]
    assert reply.stats["memory.max"] == 0
    assert reply.stats["sampler.cycles"] >= 1


def test_info_counts_operations_hits_and_misses(channel, stub, keys):
    k = keys("k")
    before = stats(channel)
    stub.Set(pb.SetRequest(key=k, value=b"v"))
    stub.Get(pb.GetRequest(key=k))
    stub.Get(pb.GetRequest(key=k))
    stub.Get(pb.GetRequest(key=keys("missing")))
    with pytest.raises(grpc.RpcError):
        stub.Get(pb.GetRequest(key=b""))
    with pytest.raises(grpc.RpcError):
        stub.Incr(pb.IncrRequest(key=k, delta=1))
    after = stats(channel)
    assert delta(before, after, "ops.set.ok") == 1
    assert delta(before, after, "ops.get.ok") == 3
    assert delta(before, after, "ops.get.invalid_argument") == 1
    assert delta(before, after, "ops.incr.failed_precondition") == 1
    assert delta(before, after, "hits") == 2
    assert delta(before, after, "misses") == 1
    assert delta(before, after, "keys") == 1
    assert after["memory.used"] > before["memory.used"]


def test_info_counts_pipeline_operations(channel, stub, keys, open_pipeline):
    before = stats(channel)
    stream = open_pipeline(stub)
    stream.send(
        pb.Operation(id=1, set=pb.SetRequest(key=keys("k"), value=b"v")),
        pb.Operation(id=2, get=pb.GetRequest(key=keys("k"))),
        pb.Operation(id=3, get=pb.GetRequest(key=b"")),
        pb.Operation(id=4),
    )
    assert stream.close() == grpc.StatusCode.OK
    after = stats(channel)
    assert delta(before, after, "ops.set.ok") == 1
    assert delta(before, after, "ops.get.ok") == 1
    assert delta(before, after, "ops.get.invalid_argument") == 1
    assert delta(before, after, "ops.unknown.invalid_argument") == 1


def test_info_keys_and_memory_follow_writes_and_deletes(channel, stub, keys):
    before = stats(channel)
    ks = [keys(f"k{i}") for i in range(100)]
    stub.MSet(pb.MSetRequest(entries=[pb.SetRequest(key=k, value=b"x" * 1000) for k in ks]))
    written = stats(channel)
    assert delta(before, written, "keys") == 100
    assert delta(before, written, "memory.used") > 100 * 1000
    assert stub.MDelete(pb.MDeleteRequest(keys=ks)).deleted == 100
    deleted = stats(channel)
    assert deleted["keys"] == before["keys"]
    assert deleted["memory.used"] == before["memory.used"]


def test_info_counts_lazy_expiry(servers, keys):
    # A sampler that (almost) never runs, so only reads can expire keys.
    server = servers("--expire-hz", "0.001")
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        for i in range(5):
            stub.Set(pb.SetRequest(key=keys(f"k{i}"), value=b"v", ttl_ms=50))
        stub.Set(pb.SetRequest(key=keys("keep"), value=b"v"))
        time.sleep(0.1)
        before = stats(channel)
        assert before["keys"] == 6  # expired but not yet collected
        assert before["expired.lazy"] == 0
        for i in range(3):
            assert not stub.Get(pb.GetRequest(key=keys(f"k{i}"))).found
        after = stats(channel)
        assert after["expired.lazy"] == 3
        assert after["expired.active"] == 0
        assert after["keys"] == 3
        assert delta(before, after, "misses") == 3


def test_info_counts_active_expiry(servers, keys):
    server = servers("--expire-hz", "50")
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        entries = [pb.SetRequest(key=keys(f"k{i}"), value=b"v", ttl_ms=50) for i in range(200)]
        stub.MSet(pb.MSetRequest(entries=entries))
        stub.Set(pb.SetRequest(key=keys("keep"), value=b"v"))
        assert stats(channel)["keys"] == 201
        # Nobody reads the keys: only the sampler can remove them.
        assert eventually(lambda: stats(channel)["keys"] == 1, timeout=10), stats(channel)
        after = stats(channel)
        assert after["expired.active"] == 200
        assert after["expired.lazy"] == 0
        assert after["keys.with_ttl"] == 0
        assert after["sampler.cycles"] > 1
        assert stub.Get(pb.GetRequest(key=keys("keep"))).found


# ---- signals ---------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_calls_and_exits_zero(servers, keys, open_pipeline):
    server = servers("--shutdown-grace", "20")
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=20
        )
        assert next(watch).status == SERVING
        stream = open_pipeline(stub)
        (first,) = stream.send(pb.Operation(id=1, set=pb.SetRequest(key=keys("a"), value=b"A")))
        assert first.set.applied

        # A batch is in the server's socket, unread, when the shutdown begins.
        server.send_signal(signal.SIGSTOP)
        try:
            batch = [
                pb.Operation(id=i, set=pb.SetRequest(key=keys(f"k{i}"), value=b"%d" % i))
                for i in range(2000)
            ]
            stream.send_only(*batch)
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
        finally:
            server.send_signal(signal.SIGCONT)
        results = stream.receive()
        assert [r.id for r in results] == list(range(2000))
        assert all(r.set.applied for r in results)

        # Health watchers hear about the shutdown.
        assert next(watch).status == NOT_SERVING
        watch.cancel()

        # The open stream keeps working until the client ends it.
        reads = stream.send(
            pb.Operation(id=1, get=pb.GetRequest(key=keys("a"))),
            pb.Operation(id=2, get=pb.GetRequest(key=keys("k1999"))),
        )
        assert [r.get.value for r in reads] == [b"A", b"1999"]
        assert stream.close() == grpc.StatusCode.OK

    # Once nothing is in flight it exits, long before the 20 s grace runs out.
    assert server.proc.wait(timeout=15) == 0
    assert time.monotonic() - signalled < 10
    log = server.log()
    assert "shutting down" in log
    assert "stopped" in log
    assert "Traceback" not in log


def test_sigterm_with_concurrent_unary_calls(servers, keys):
    server = servers()
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        stub.Set(pb.SetRequest(key=keys("warm"), value=b"v"), timeout=5)
        # The calls queue up in the stopped server's socket, and SIGTERM is pending
        # when it resumes: as many calls in flight at shutdown as one can arrange.
        server.send_signal(signal.SIGSTOP)
        try:
            futures = [
                stub.Set.future(pb.SetRequest(key=keys(f"k{i}"), value=b"v"), timeout=15)
                for i in range(100)
            ]
            time.sleep(0.1)
            server.send_signal(signal.SIGTERM)
        finally:
            server.send_signal(signal.SIGCONT)
        codes = []
        for f in futures:
            try:
                assert f.result().applied
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    # Every call sent before SIGTERM drains: the node pauses between NOT_SERVING and
    # stopping, so calls gRPC core has read reach their handlers (grpc/grpc#41785).
    assert codes == [grpc.StatusCode.OK] * len(futures), codes
    assert server.proc.wait(timeout=15) == 0
    assert "Traceback" not in server.log()


def test_sigint_exits_zero(servers):
    server = servers()
    with grpc.insecure_channel(server.address) as channel:
        assert health_status(channel, "") == SERVING
    server.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=15) == 0
    assert "stopped" in server.log()


def test_new_connections_are_refused_after_exit(servers):
    server = servers()
    server.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        with pytest.raises(grpc.RpcError) as info_:
            stub.Get(pb.GetRequest(key=b"k"), timeout=5)
        assert info_.value.code() == grpc.StatusCode.UNAVAILABLE


# ---- configuration -----------------------------------------------------------------------------


@contextlib.contextmanager
def spawn(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A server started by hand (the launcher strips SLOTCACHE_* on purpose); always reaped."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*server_command(), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTCACHE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def test_environment_variables_configure_the_server_and_flags_win(tmp_path):
    port = free_port()
    env = clean_env(
        SLOTCACHE_HOST=LOOPBACK,
        SLOTCACHE_PORT=str(port),
        SLOTCACHE_DATA_DIR=str(tmp_path / "data"),
        SLOTCACHE_MAX_KEY_BYTES="16",
        SLOTCACHE_MAXMEMORY="2mb",
        SLOTCACHE_MAXMEMORY_POLICY="allkeys-lru",
        SLOTCACHE_MAX_VALUE_BYTES="1k",
    )
    log_path = tmp_path / "server.log"
    with spawn(["--max-value-bytes", "2k"], env, log_path) as proc:
        address = f"{LOOPBACK}:{port}"
        assert wait_serving(address, 20), log_path.read_text()
        with grpc.insecure_channel(address) as channel:
            reply = info(channel)
            assert reply.server["maxmemory_policy"] == "allkeys-lru"
            assert reply.server["data_dir"] == str(tmp_path / "data")
            assert reply.stats["memory.max"] == 2 * 1024 * 1024
            assert (tmp_path / "data").is_dir()

            stub = cache_pb2_grpc.CacheStub(channel)
            assert stub.Set(pb.SetRequest(key=b"k" * 16, value=b"v"), timeout=5).applied
            with pytest.raises(grpc.RpcError) as err:
                stub.Set(pb.SetRequest(key=b"k" * 17, value=b"v"), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "limit is 16" in err.value.details()

            # --max-value-bytes 2k beats SLOTCACHE_MAX_VALUE_BYTES=1k.
            assert stub.Set(pb.SetRequest(key=b"v", value=b"x" * 2048), timeout=5).applied
            with pytest.raises(grpc.RpcError) as err:
                stub.Set(pb.SetRequest(key=b"v", value=b"x" * 2049), timeout=5)
            assert "limit is 2048" in err.value.details()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["--port", "70000"], {}, ["--port", "70000", "1..65535"]),
        (["--port", "http"], {}, ["--port", "'http'"]),
        (["--maxmemory-policy", "nope"], {}, ["--maxmemory-policy", "'nope'", "allkeys-lru"]),
        (["--maxmemory", "lots"], {}, ["--maxmemory", "'lots'"]),
        ([], {"SLOTCACHE_MAXMEMORY": "abc"}, ["SLOTCACHE_MAXMEMORY", "'abc'", "invalid size"]),
        ([], {"SLOTCACHE_PORT": "70000"}, ["SLOTCACHE_PORT", "1..65535"]),
        (["--expire-hz", "0"], {}, ["--expire-hz", "> 0"]),
        (["--max-key-bytes", "0"], {}, ["key size"]),
        (["--log-level", "loud"], {}, ["--log-level", "'loud'"]),
        (["--no-such-flag"], {}, ["--no-such-flag"]),
    ],
    ids=[
        "port-range",
        "port-text",
        "policy",
        "maxmemory",
        "env-maxmemory",
        "env-port",
        "expire-hz",
        "max-key-bytes",
        "log-level",
        "unknown-flag",
    ],
)
def test_bad_settings_exit_nonzero_naming_the_problem(tmp_path, args, env, fragments):
    result = subprocess.run(
        [*server_command(), "--data-dir", str(tmp_path), *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in message, message


def test_port_in_use_by_another_program(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*server_command(), "--port", str(port), "--data-dir", str(tmp_path)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on {LOOPBACK}:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_by_another_node(server, channel, tmp_path):
    result = subprocess.run(
        [*server_command(), "--port", str(server.port), "--data-dir", str(tmp_path)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on {server.address}" in result.stderr
    # The node that holds the port is unaffected.
    assert health_status(channel, "") == SERVING
