"""Hostile and broken input on a live node: the offending connection ends, the node serves on."""

from __future__ import annotations

import socket
import threading

import redis

from slotcache.ctl.launcher import LOOPBACK


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection.

    A server that closes while our data is still unread resets the
    connection: that is a close too.
    """
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _still_serves(port: int) -> None:
    with redis.Redis(LOOPBACK, port, socket_timeout=5) as r:
        r.set("alive", "yes")
        assert r.get("alive") == b"yes"


def test_a_stream_that_is_not_resp_gets_one_error_and_is_closed(resp_port: int) -> None:
    for garbage in (
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nNOT RESP AT ALL\r\n",
        b"*1\r\n$x\r\n",
        b"*2\r\n$3\r\nGET\r\n:5\r\n",
        b"+OK\r\n",
        b"*1\r\n*1\r\n$1\r\na\r\n",
    ):
        with _raw(resp_port) as sock:
            sock.sendall(garbage)
            received = _until_closed(sock)
        lines = received.split(b"\r\n")
        errors = [line for line in lines if line.startswith(b"-")]
        assert len(errors) == 1 and errors[0].startswith(b"-ERR Protocol error"), received
        assert received.endswith(b"\r\n")
    _still_serves(resp_port)


def test_a_request_over_the_size_limit_ends_the_connection(resp_port: int) -> None:
    with _raw(resp_port) as sock:
        # A bulk string announced at 1 GiB, then 65 MiB of it: past the 64 MiB request limit.
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\n")
        chunk = b"\0" * (1 << 20)
        sent_all = True
        try:
            for _ in range(65):
                sock.sendall(chunk)
        except OSError:
            sent_all = False  # the server closed first: also a pass
        received = _until_closed(sock) if sent_all else b""
    assert received == b"" or received.startswith(b"-ERR Protocol error")
    _still_serves(resp_port)


def test_an_argument_over_the_value_limit_is_refused_and_the_connection_kept(
    resp_port: int,
) -> None:
    with redis.Redis(LOOPBACK, resp_port, socket_timeout=10) as r:
        try:
            r.set("huge", b"x" * (17 << 20))
            raise AssertionError("a 17 MiB value was accepted")
        except redis.ResponseError as exc:
            assert "limit" in str(exc)
        assert r.ping()
        assert r.get("huge") is None


def test_a_client_that_does_not_read_is_paused_not_buffered(resp_port: int) -> None:
    value = b"v" * 10_000
    with redis.Redis(LOOPBACK, resp_port) as r:
        r.set("bp:value", value)
        rss_before = r.info("memory")["used_memory_rss"]
    count = 30_000  # 300 MB of replies if the server buffered them all
    request = b"*2\r\n$3\r\nGET\r\n$8\r\nbp:value\r\n"
    with _raw(resp_port) as sock:
        sock.settimeout(30)

        def send() -> None:
            sock.sendall(request * count)

        sender = threading.Thread(target=send)
        sender.start()
        expected = len(b"$10000\r\n" + value + b"\r\n") * count
        received = 0
        with redis.Redis(LOOPBACK, resp_port) as r:
            # Replies are not read yet: the node must stop reading instead of buffering.
            sender.join(1.0)
            rss_during = r.info("memory")["used_memory_rss"]
        while received < expected:
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
        sender.join(30)
    assert received == expected
    assert rss_during - rss_before < 100 << 20
    _still_serves(resp_port)
