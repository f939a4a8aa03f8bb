"""``HOST:PORT`` addresses: what is wrong with one, said precisely. Pure functions.

gRPC takes a port above 65535 modulo 65536 (``127.0.0.1:99999`` dials port
34463), so a typo would reach the wrong port, or fail with a message about
an address the user never wrote.
"""

from __future__ import annotations

EXAMPLE = "127.0.0.1:7000"
MAX_PORT = 65535


def _port_problem(text: str, port: str) -> str | None:
    if port.isdigit() and not 0 < int(port) <= MAX_PORT:
        return f"{text!r}: port {int(port)} is outside 1..{MAX_PORT}"
    return None


def split_host_port(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[::1]:7000`` for IPv6); ValueError says what is off."""
    host, sep, port = text.rpartition(":")
    problem = _port_problem(text, port) if sep else None
    if problem is not None:
        raise ValueError(problem)
    if not sep or not host or any(c.isspace() for c in text) or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT (for example {EXAMPLE})")
    return host, int(port)


def check_port(text: str) -> str:
    """``text`` unchanged, unless it ends in a port number outside 1..65535 (ValueError).

    Other target forms gRPC accepts (a name without a port, ``unix:``) pass.
    """
    host, sep, port = text.rpartition(":")
    problem = _port_problem(text, port) if sep and host else None
    if problem is not None:
        raise ValueError(problem)
    return text
