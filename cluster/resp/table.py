"""The commands the listener knows, described as Redis's COMMAND describes them (pure).

Cluster-aware clients read COMMAND once to learn where each command's keys
are (first key, last key, step), so the positions here must be exact:
redis-py's RedisCluster routes a command by them. No command is flagged
``movablekeys``: that would make clients ask COMMAND GETKEYS for each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import Simple


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """One command's COMMAND INFO entry, and its COMMAND DOCS summary."""

    name: str
    arity: int
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    step: int
    categories: tuple[str, ...]
    group: str
    summary: str
    since: str = "1.0.0"

    def info(self) -> list[Any]:
        """The COMMAND INFO entry (Redis 7 layout: ten fields)."""
        key_specs: list[Any] = []
        if self.first_key:
            key_specs.append(
                {
                    "begin_search": {"type": "index", "spec": {"index": self.first_key}},
                    "find_keys": {
                        "type": "range",
                        "spec": {"lastkey": self._lastkey_spec(), "keystep": self.step, "limit": 0},
                    },
                }
            )
        return [
            self.name,
            self.arity,
            {Simple(f) for f in self.flags},
            self.first_key,
            self.last_key,
            self.step,
            {Simple("@" + c) for c in self.categories},
            [],
            key_specs,
            [],
        ]

    def _lastkey_spec(self) -> int:
        # Relative to the first key: 0 for one key, -1 for "up to the last argument".
        return 0 if self.last_key == self.first_key else self.last_key

    def docs(self) -> dict[str, Any]:
        """The COMMAND DOCS entry: enough for clients that show help."""
        return {"summary": self.summary, "since": self.since, "group": self.group}


def _c(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int],
    categories: str,
    group: str,
    summary: str,
    since: str = "1.0.0",
) -> CommandInfo:
    return CommandInfo(
        name, arity, tuple(flags.split()), *keys, tuple(categories.split()), group, summary, since
    )


_NO_KEYS = (0, 0, 0)
_ONE_KEY = (1, 1, 1)
_ALL_KEYS = (1, -1, 1)

COMMANDS: dict[str, CommandInfo] = {
    c.name: c
    for c in (
        _c("get", 2, "readonly fast", _ONE_KEY, "read string fast", "string", "Get a value."),
        _c("set", -3, "write denyoom", _ONE_KEY, "write string slow", "string", "Set a value."),
        _c("del", -2, "write", _ALL_KEYS, "keyspace write slow", "generic", "Delete keys."),
        _c(
            "unlink",
            -2,
            "write fast",
            _ALL_KEYS,
            "keyspace write fast",
            "generic",
            "Delete keys (as DEL: slotcache frees memory at once).",
            "4.0.0",
        ),
        _c(
            "exists",
            -2,
            "readonly fast",
            _ALL_KEYS,
            "keyspace read fast",
            "generic",
            "Count the keys that exist.",
        ),
        _c(
            "expire",
            -3,
            "write fast",
            _ONE_KEY,
            "keyspace write fast",
            "generic",
            "Set a key's TTL in seconds.",
        ),
        _c(
            "pexpire",
            -3,
            "write fast",
            _ONE_KEY,
            "keyspace write fast",
            "generic",
            "Set a key's TTL in milliseconds.",
            "2.6.0",
        ),
        _c("ttl", 2, "readonly fast", _ONE_KEY, "keyspace read fast", "generic", "TTL in seconds."),
        _c(
            "pttl",
            2,
            "readonly fast",
            _ONE_KEY,
            "keyspace read fast",
            "generic",
            "TTL in milliseconds.",
            "2.6.0",
        ),
        _c(
            "persist",
            2,
            "write fast",
            _ONE_KEY,
            "keyspace write fast",
            "generic",
            "Remove a key's TTL.",
            "2.2.0",
        ),
        _c("incr", 2, "write denyoom fast", _ONE_KEY, "write string fast", "string", "Add 1."),
        _c("incrby", 3, "write denyoom fast", _ONE_KEY, "write string fast", "string", "Add N."),
        _c("decr", 2, "write denyoom fast", _ONE_KEY, "write string fast", "string", "Take 1."),
        _c("decrby", 3, "write denyoom fast", _ONE_KEY, "write string fast", "string", "Take N."),
        _c(
            "mget",
            -2,
            "readonly fast",
            _ALL_KEYS,
            "read string fast",
            "string",
            "Get many values (across slots too).",
        ),
        _c(
            "mset",
            -3,
            "write denyoom",
            (1, -1, 2),
            "write string slow",
            "string",
            "Set many values (across slots too).",
            "1.0.1",
        ),
        _c("ping", -1, "fast stale", _NO_KEYS, "fast connection", "connection", "Ping."),
        _c("echo", 2, "fast stale", _NO_KEYS, "fast connection", "connection", "Echo."),
        _c(
            "hello",
            -1,
            "noscript loading stale fast no_auth",
            _NO_KEYS,
            "fast connection",
            "connection",
            "Choose the protocol version, authenticate, name the connection.",
            "6.0.0",
        ),
        _c(
            "auth",
            -2,
            "noscript loading stale fast no_auth",
            _NO_KEYS,
            "fast connection",
            "connection",
            "Authenticate the connection.",
        ),
        _c(
            "select",
            2,
            "loading stale fast",
            _NO_KEYS,
            "fast connection",
            "connection",
            "Select database 0 (the only one).",
        ),
        _c(
            "quit",
            -1,
            "noscript loading stale fast no_auth",
            _NO_KEYS,
            "fast connection",
            "connection",
            "Close the connection.",
        ),
        _c(
            "reset",
            1,
            "noscript loading stale fast no_auth",
            _NO_KEYS,
            "fast connection",
            "connection",
            "Reset the connection's state.",
            "6.2.0",
        ),
        _c(
            "client",
            -2,
            "noscript loading stale",
            _NO_KEYS,
            "slow connection",
            "connection",
            "CLIENT SETNAME, GETNAME, ID, INFO and TRACKING.",
            "2.4.0",
        ),
        _c(
            "info",
            -1,
            "loading stale",
            _NO_KEYS,
            "slow dangerous",
            "server",
            "Server information and statistics.",
        ),
        _c(
            "dbsize",
            1,
            "readonly fast",
            _NO_KEYS,
            "keyspace read fast",
            "server",
            "Number of keys on this node.",
        ),
        _c(
            "command",
            -1,
            "loading stale",
            _NO_KEYS,
            "slow connection",
            "server",
            "The command table.",
            "2.8.13",
        ),
        _c(
            "cluster",
            -2,
            "",
            _NO_KEYS,
            "slow",
            "cluster",
            "CLUSTER SLOTS, SHARDS, NODES, INFO, KEYSLOT, MYID, COUNTKEYSINSLOT.",
            "3.0.0",
        ),
        _c(
            "readonly",
            1,
            "loading stale fast",
            _NO_KEYS,
            "fast connection",
            "cluster",
            "Let this connection read from replicas.",
            "3.0.0",
        ),
        _c(
            "readwrite",
            1,
            "loading stale fast",
            _NO_KEYS,
            "fast connection",
            "cluster",
            "Stop reading from replicas.",
            "3.0.0",
        ),
    )
}


def command_reply(args: list[bytes]) -> Any:
    """The value answering COMMAND, COMMAND COUNT, INFO, DOCS, LIST; None for other subcommands."""
    if len(args) == 1:
        return [c.info() for c in COMMANDS.values()]
    sub = args[1].lower()
    names = [a.decode("utf-8", "replace").lower() for a in args[2:]]
    if sub == b"count":
        return len(COMMANDS)
    if sub == b"list":
        return [c.name for c in COMMANDS.values()]
    if sub == b"info":
        chosen = names or list(COMMANDS)
        return [COMMANDS[n].info() if n in COMMANDS else None for n in chosen]
    if sub == b"docs":
        chosen = names or list(COMMANDS)
        return {n: COMMANDS[n].docs() for n in chosen if n in COMMANDS}
    return None
