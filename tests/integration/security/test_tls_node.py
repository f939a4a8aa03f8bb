"""TLS on one node's client port: who gets in, what they are told, and certificate rotation."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

import slotcache
from slotcache.ctl.certs import Authority, LocalCerts
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc as pb_grpc
from tests.support.processes import ServerFactory, run_to_completion

SHORT = 3.0


@pytest.fixture(scope="module")
def tls_node(
    tmp_path_factory: pytest.TempPathFactory, certs: LocalCerts
) -> Iterator[ServerProcess]:
    """A TLS-only standalone node requiring client certificates (the default with TLS)."""
    factory = ServerFactory(tmp_path_factory.mktemp("tls-node"))
    try:
        yield factory.start(tls=certs)
    finally:
        factory.close()


def test_a_plaintext_client_is_told_the_node_may_require_tls(tls_node: ServerProcess) -> None:
    with (
        pytest.raises(slotcache.Unavailable) as refused,
        slotcache.Client(tls_node.address, timeout=SHORT) as client,
    ):
        client.get(b"k")
    assert "it may require TLS" in refused.value.message
    assert "tls=slotcache.TlsOptions" in refused.value.message


def test_mutual_tls_refuses_a_client_without_a_certificate(
    tls_node: ServerProcess, certs: LocalCerts
) -> None:
    no_cert = slotcache.TlsOptions(ca=certs.ca)
    with (
        pytest.raises(slotcache.Unavailable) as refused,
        slotcache.Client(tls_node.address, timeout=SHORT, tls=no_cert) as client,
    ):
        client.get(b"k")
    assert "client certificate" in refused.value.message

    with slotcache.Client(tls_node.address, tls=certs.client_options()) as client:
        client.set(b"mtls", b"in")
        assert client.get(b"mtls") == b"in"


def test_tls_clients_without_certificates_get_in_when_not_required(
    servers: ServerFactory, certs: LocalCerts
) -> None:
    node = servers.start("--tls-auth-clients", "no", tls=certs)
    pem = certs.ca.read_bytes()  # bytes work as well as paths
    async_ok = _async_round_trip(node.address, slotcache.TlsOptions(ca=pem))
    with slotcache.Client(node.address, tls=slotcache.TlsOptions(ca=pem)) as client:
        client.set(b"open", b"door")
        assert client.get(b"open") == b"door"
    assert async_ok == b"door"


def _async_round_trip(address: str, tls: slotcache.TlsOptions) -> bytes | None:
    async def run() -> bytes | None:
        async with slotcache.AsyncClient(address, tls=tls) as client:
            await client.set(b"open", b"door")
            value: bytes | None = await client.get(b"open")
            return value

    return asyncio.run(run())


def _handshake(address: str, certs: LocalCerts, version: ssl.TLSVersion) -> str:
    """The protocol a handshake limited to ``version`` negotiates (raises if refused)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certs.ca)
    context.load_cert_chain(certs.client.cert, certs.client.key)
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=SHORT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return str(tls.version())


def _served_serial(address: str, certs: LocalCerts) -> int:
    """The serial number of the certificate a new connection is served."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(certs.client.cert, certs.client.key)
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=SHORT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_only_tls_1_2_and_later_are_accepted(tls_node: ServerProcess, certs: LocalCerts) -> None:
    assert _handshake(tls_node.address, certs, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(tls_node.address, certs, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(tls_node.address, certs, ssl.TLSVersion.TLSv1_1)


def _bad_start(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_to_completion(tmp_path / "data", *flags)


def test_unusable_tls_files_stop_the_start_with_a_reason(tmp_path: Path, certs: LocalCerts) -> None:
    # Contradictory flags exit 2 before anything is read (see the unit tier); files that
    # cannot be used are found when the node starts, and exit 1 naming the file.
    flags = certs.server_flags(cluster=False)
    wrong_key = [str(certs.client.key) if f == str(certs.node.key) else f for f in flags]
    mismatch = _bad_start(tmp_path, "--tls-port", "7999", *wrong_key)
    assert mismatch.returncode == 1
    assert f"the private key {certs.client.key} does not match the certificate" in mismatch.stderr

    missing = [str(tmp_path / "gone.crt") if f == str(certs.ca) else f for f in flags]
    gone = _bad_start(tmp_path, "--tls-port", "7999", *missing)
    assert gone.returncode == 1
    assert "cannot read the CA file (--tls-ca-file)" in gone.stderr
    assert not (tmp_path / "data").exists()


def test_a_rotated_certificate_reaches_new_connections_while_open_streams_go_on(
    servers: ServerFactory, own_certs: LocalCerts
) -> None:
    node = servers.start(tls=own_certs)
    credentials = own_certs.client_options().credentials()
    with grpc.secure_channel(node.address, credentials) as channel:
        stub = pb_grpc.CacheStub(channel)
        subscription = stub.Subscribe(
            pb.SubscribeRequest(mode=pb.TRACKING_MODE_BROADCAST), timeout=30
        )
        assert next(subscription).subscription_id
        requests: list[pb.PipelineRequest] = []
        pipeline = stub.Pipeline(_queued(requests), timeout=30)
        requests.append(_set(1, b"before", b"1"))
        assert next(pipeline).results[0].set.applied
        before = _served_serial(node.address, own_certs)

        # Re-issued by the same CA: a new key and serial number, renamed into place.
        Authority.load(own_certs.ca).issue(
            own_certs.node.cert.parent, own_certs.node.cert.stem, node=True
        )
        rotated = x509.load_pem_x509_certificate(own_certs.node.cert.read_bytes()).serial_number
        assert rotated != before
        assert _served_serial(node.address, own_certs) == rotated

        # The connection opened before the rotation still carries both streams.
        requests.append(_set(2, b"after", b"2"))
        assert next(pipeline).results[0].set.applied
        with slotcache.Client(node.address, tls=own_certs.client_options()) as fresh:
            fresh.set(b"written-elsewhere", b"3")
        invalidated: set[bytes] = set()
        while b"written-elsewhere" not in invalidated:
            invalidated.update(next(subscription).keys)
        assert invalidated == {b"before", b"after", b"written-elsewhere"}
        subscription.cancel()
        pipeline.cancel()


def _set(op_id: int, key: bytes, value: bytes) -> pb.PipelineRequest:
    return pb.PipelineRequest(ops=[pb.Operation(id=op_id, set=pb.SetRequest(key=key, value=value))])


def _queued(requests: list[pb.PipelineRequest]) -> Iterator[pb.PipelineRequest]:
    """Requests appended to ``requests`` are sent in order; the stream stays open meanwhile."""
    sent = 0
    while True:
        while sent < len(requests):
            yield requests[sent]
            sent += 1
        time.sleep(0.01)


def test_the_near_cache_subscribes_over_tls(tls_node: ServerProcess, certs: LocalCerts) -> None:
    tls = certs.client_options()
    with (
        slotcache.Client(
            tls_node.address, tls=tls, near_cache=slotcache.NearCacheConfig(max_entries=100)
        ) as reader,
        slotcache.Client(tls_node.address, tls=tls) as writer,
    ):
        writer.set(b"near", b"old")
        deadline = time.monotonic() + 5
        while reader.stats.near_cache_hits == 0 and time.monotonic() < deadline:
            assert reader.get(b"near") == b"old"  # the first read subscribes, later ones hit
        assert reader.near_cache is not None
        assert reader.near_cache.subscriptions()
        writer.set(b"near", b"new")
        # The invalidation arrives over the TLS Subscribe stream; stale reads stop.
        while reader.get(b"near") != b"new" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert reader.get(b"near") == b"new"
