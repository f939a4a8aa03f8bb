"""The access log: who called, when, on which key, with what outcome, as JSON lines.

The event loop only appends a tuple to a bounded deque (one C call, no
lock, no thread wake-up); a writer thread wakes every
``FLUSH_INTERVAL_S``, turns what gathered into JSON, hashes keys when
asked, writes and rotates. Waking it per entry would hand the GIL back and
forth hundreds of times a second. A full deque (a slow disk, a blocked
pipe) drops the entry and counts it: serving never waits for the log.
Entries carry no values and, once access control exists, a user name but
never a credential.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring
from pathlib import Path
from typing import NamedTuple, TextIO

STDERR = "stderr"
KEY_PREFIX_CHARS = 48
FLUSH_INTERVAL_S = 0.2


class KeyMode(StrEnum):
    """How keys appear in the log."""

    TRUNCATE = "truncate"
    HASH = "hash"

    @classmethod
    def parse(cls, text: str) -> KeyMode:
        """Parse a flag value."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"expected truncate or hash, not {text!r}") from None


class Entry(NamedTuple):
    """One logged operation, as captured on the event loop (formatting happens later)."""

    time_ns: int
    peer: str
    user: str
    op: str
    key: bytes
    keys: int
    slot: int
    status: str
    reason: str
    latency_us: int
    bytes_in: int
    bytes_out: int
    # "grpc" or "resp"; entries show it only when it is not gRPC.
    protocol: str = "grpc"


@dataclass(frozen=True)
class AccessLogConfig:
    """Where and how much to log."""

    target: str
    sample: int = 100
    keys: KeyMode = KeyMode.TRUNCATE
    max_bytes: int = 64 * 1024 * 1024
    keep: int = 5
    queue_size: int = 10_000


# How the standard encoder quotes a string without escaping non-ASCII (``ensure_ascii=False``).
_quote: Callable[[str], str] = encode_basestring


def render_key(key: bytes, mode: KeyMode) -> str:
    """The key's JSON fields: a readable prefix, or a stable hash that still groups calls by key."""
    if mode is KeyMode.HASH:
        return f',"key_hash":"{hashlib.blake2b(key, digest_size=8).hexdigest()}"'
    text = key.decode("utf-8", "backslashreplace")
    if len(text) <= KEY_PREFIX_CHARS:
        return f',"key":{_quote(text)}'
    return f',"key":{_quote(text[:KEY_PREFIX_CHARS] + "…")},"key_len":{len(key)}'


@functools.lru_cache(maxsize=4)
def _second_text(seconds: int) -> str:
    """The UTC second as entries show it; the writer formats many entries per second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def format_entry(entry: Entry, mode: KeyMode) -> str:
    """One JSON line; fields absent when they mean nothing (no key, no user yet).

    Written field by field rather than through a dict and ``json.dumps``
    (the same text, in a third of the time): the writer formats every
    logged call. Strings are quoted by the standard encoder's own function.
    """
    seconds, ns = divmod(entry.time_ns, 1_000_000_000)
    line = f'{{"ts":"{_second_text(seconds)}.{ns // 1000:06d}Z","peer":{_quote(entry.peer)}'
    if entry.user:
        line += f',"user":{_quote(entry.user)}'
    line += f',"op":{_quote(entry.op)}'
    if entry.protocol != "grpc":
        line += f',"protocol":{_quote(entry.protocol)}'
    if entry.keys:
        line += render_key(entry.key, mode)
        if entry.keys > 1:
            line += f',"keys":{entry.keys}'
        line += f',"slot":{entry.slot}'
    line += f',"status":{_quote(entry.status)}'
    if entry.reason:
        line += f',"reason":{_quote(entry.reason)}'
    return f'{line},"us":{entry.latency_us},"in":{entry.bytes_in},"out":{entry.bytes_out}}}\n'


class RotatingFile:
    """Appends to a file and rotates it by size: ``log``, ``log.1`` .. ``log.<keep>``."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._file: TextIO | None = None
        self._size = 0

    def write(self, text: str) -> None:
        """Write, rotating first when the text would pass the size limit."""
        if self._file is None:
            self._open()
        data_len = len(text.encode())
        if self._size and self._size + data_len > self.max_bytes:
            self._rotate()
        assert self._file is not None
        self._file.write(text)
        self._file.flush()
        self._size += data_len

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        try:
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError:
            self._size = 0

    def _rotate(self) -> None:
        self.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.keep:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def close(self) -> None:
        """Close the current file."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class _Stderr:
    def write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        pass


class AccessLog:
    """A bounded deque in front of a writer thread."""

    def __init__(self, config: AccessLogConfig) -> None:
        self.config = config
        self.sample = config.sample
        self.dropped = 0
        self.written = 0
        self.write_errors = 0
        self._limit = config.queue_size
        self._pending: deque[Entry] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)

    def start(self) -> None:
        """Start the writer thread (it opens the file, so a blocked open blocks only it)."""
        self._thread.start()

    def put(self, entry: Entry) -> None:
        """Queue an entry, or drop and count it when the writer is behind."""
        pending = self._pending
        if len(pending) < self._limit:
            pending.append(entry)
        else:
            self.dropped += 1

    def stop(self, timeout_s: float = 1.0) -> None:
        """Flush what is queued, within ``timeout_s``; a stuck writer is left behind (daemon)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _sink(self) -> RotatingFile | _Stderr:
        cfg = self.config
        if cfg.target == STDERR:
            return _Stderr()
        return RotatingFile(Path(cfg.target), cfg.max_bytes, cfg.keep)

    def _run(self) -> None:
        sink = self._sink()
        mode = self.config.keys
        pending = self._pending
        try:
            while True:
                stopping = self._stopping.wait(FLUSH_INTERVAL_S)
                # popleft is atomic: entries appended meanwhile wait for the next round.
                entries = [pending.popleft() for _ in range(len(pending))]
                if entries:
                    try:
                        sink.write("".join(format_entry(e, mode) for e in entries))
                        self.written += len(entries)
                    except OSError:
                        # A full disk or a vanished directory: these entries are lost.
                        self.write_errors += len(entries)
                if stopping:
                    return
        finally:
            sink.close()
