"""Redis-format errors, and the translation of the request path's refusals (pure).

Clients act on an error's first word: ``MOVED`` and ``ASK`` redirect,
``TRYAGAIN`` and ``CLUSTERDOWN`` are retried by cluster clients, ``ERR``
is the caller's fault. Refusals of the shared request path
(:class:`~slotcache_server.executor.CommandError`) are mapped to the word a
Redis client expects for the same situation.
"""

from __future__ import annotations

from collections.abc import Callable

from slotcache.contract import Reason

from ..executor import CommandError

INVALID = "INVALID_ARGUMENT"


class RespError(Exception):
    """A command refused before it reached the request path; ``text`` is the whole error line."""

    def __init__(self, text: str, status: str = INVALID) -> None:
        super().__init__(text)
        self.text = text
        # The status code name it is counted under in the metrics.
        self.status = status


def wrong_arity(name: str) -> RespError:
    """Redis's message for a command called with the wrong number of arguments."""
    return RespError(f"ERR wrong number of arguments for '{name.lower()}' command")


def syntax_error() -> RespError:
    """Redis's message for options it cannot parse."""
    return RespError("ERR syntax error")


def not_an_integer() -> RespError:
    """Redis's message for a numeric argument that is not an integer."""
    return RespError("ERR value is not an integer or out of range")


def unknown_command(args: list[bytes]) -> RespError:
    """Redis's message for a command it does not have, naming it and its first arguments."""
    name = args[0].decode("utf-8", "replace")
    # Redis follows every argument shown with a space, the last one too.
    shown = "".join(f"'{a.decode('utf-8', 'replace')[:128]}' " for a in args[1:20])
    return RespError(
        f"ERR unknown command '{name[:128]}', with args beginning with: {shown}", "UNIMPLEMENTED"
    )


def unknown_subcommand(command: str, sub: bytes) -> RespError:
    """Redis's message for a subcommand it does not have."""
    text = sub.decode("utf-8", "replace")[:128]
    return RespError(
        f"ERR unknown subcommand '{text}'. Try {command.upper()} HELP.", "UNIMPLEMENTED"
    )


def error_text(exc: CommandError, moved_to: Callable[[dict[str, str]], str | None]) -> str:
    """The Redis error line for a refusal of the request path.

    ``moved_to`` turns MOVED metadata into the owner's RESP ``host:port``;
    it is only asked when the reason is MOVED.
    """
    reason = exc.reason
    if reason == Reason.MOVED:
        target = moved_to(exc.metadata)
        return f"MOVED {exc.metadata.get('slot', '0')} {target}"
    if reason == Reason.CLUSTER_DOWN:
        # A migration's handoff or disagreeing views pass: retrying soon succeeds.
        if exc.message.startswith("CLUSTERDOWN"):
            return exc.message
        return f"TRYAGAIN {exc.message}"
    if reason == Reason.NOT_INTEGER:
        return "ERR value is not an integer or out of range"
    if reason == Reason.INTEGER_OVERFLOW:
        return "ERR increment or decrement would overflow"
    if reason == Reason.OOM:
        return "OOM command not allowed when used memory > 'maxmemory'."
    if reason in (Reason.NOT_ENOUGH_REPLICAS, Reason.REPLICATION_TIMEOUT):
        return f"NOREPLICAS {exc.message}"
    return f"ERR {exc.message}"
