"""The Prometheus endpoint's HTTP server, quick to stop.

prometheus_client's ``start_http_server`` runs ``serve_forever`` with its
default half-second poll, so stopping it (``shutdown``) waits up to 0.5 s.
A node stops it on its way out, and a restarting node's replacement cannot
bind before the old process has exited: that wait would lengthen every
restart's gap. This is the same server with a short poll.
"""

from __future__ import annotations

import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# The longest ``shutdown`` waits; an idle endpoint wakes this often.
STOP_POLL_S = 0.02


class _QuietHandler(WSGIRequestHandler):
    """Scrapes are not worth a log line each."""

    def log_message(self, format: str, *args: object) -> None:
        return None


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``registry`` on ``host:port`` from a daemon thread; ``shutdown()`` stops it."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(
        str(sockaddr[0]), port, make_wsgi_app(registry), Server, handler_class=_QuietHandler
    )
    threading.Thread(
        target=httpd.serve_forever, args=(STOP_POLL_S,), name="metrics-http", daemon=True
    ).start()
    return httpd
