"""The Prometheus endpoint's HTTP server: asleep between scrapes, quick to stop.

prometheus_client's ``start_http_server`` runs ``serve_forever``, which
wakes every poll interval to see whether it should stop: a long interval
makes ``shutdown`` slow (a restarting node's replacement cannot bind before
the old process has exited, so that wait would lengthen every restart's
gap), a short one makes an idle thread take the GIL from the event loop
many times a second. This server sleeps in ``select`` on its socket and on
a socket pair that ``shutdown`` writes to, so it wakes only for a scrape or
to stop.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    """Scrapes are not worth a log line each."""

    def log_message(self, format: str, *args: object) -> None:
        return None


class WakeableServer(ThreadingWSGIServer):
    """A threading WSGI server whose loop blocks until a request comes or ``shutdown`` is asked."""

    # handle_request() selects again before accepting: it must not wait there
    # (deaf to shutdown) if the client that woke the loop has gone meanwhile.
    timeout = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Made first: a failed bind inside TCPServer's __init__ calls server_close().
        self._wake_recv, self._wake_send = socket.socketpair()
        self._stopped = threading.Event()
        super().__init__(*args, **kwargs)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown`; ``poll_interval`` is ignored (nothing polls)."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_recv, selectors.EVENT_READ)
                while True:
                    ready = selector.select()
                    if any(key.fileobj is self._wake_recv for key, _ in ready):
                        return
                    self.handle_request()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Wake the loop and wait for it to end (it must be running, as with socketserver)."""
        self._wake_send.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._wake_recv.close()
        self._wake_send.close()


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``registry`` on ``host:port`` from a daemon thread; ``shutdown()`` stops it."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(WakeableServer):
        address_family = family

    httpd = make_server(
        str(sockaddr[0]), port, make_wsgi_app(registry), Server, handler_class=_QuietHandler
    )
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd
