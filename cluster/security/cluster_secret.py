"""The cluster secret file: the secret a node signs with and the ones it still accepts.

The file holds one secret per line. The first signs this node's calls;
every line is accepted on incoming calls, so a secret can be rolled across
a running cluster without a moment where two nodes disagree (see
docs/security.md). The file is re-read when it changes, at most once per
``RECHECK_S``, so rotating needs no restart and no signal. A file that
becomes unreadable or invalid keeps the secrets loaded before, loudly: a
typo must not cut a node off its cluster.

Secrets never reach a log line or an exception message.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Long enough that guessing is hopeless: `openssl rand -hex 32` gives 64.
MIN_SECRET_CHARS = 32
RECHECK_S = 1.0


class SecretFileError(ValueError):
    """The file cannot be used; the message names the file and the line, never a secret."""


def parse_secrets(text: str, source: str = "the cluster secret file") -> tuple[bytes, ...]:
    """The secrets in ``text``: one per line, blank lines and ``#`` comments skipped."""
    found: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        secret = line.strip()
        if not secret or secret.startswith("#"):
            continue
        if len(secret) < MIN_SECRET_CHARS:
            raise SecretFileError(
                f"{source}, line {number}: a secret needs at least {MIN_SECRET_CHARS} "
                "characters (make one with `openssl rand -hex 32`)"
            )
        found.append(secret.encode())
    if not found:
        raise SecretFileError(f"{source} holds no secret")
    return tuple(found)


def read_secrets(path: Path) -> tuple[bytes, ...]:
    """The secrets in the file at ``path``; SecretFileError when it cannot be used."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SecretFileError(f"cannot read {path}: {exc.strerror}") from None
    return parse_secrets(text, str(path))


class SecretFile:
    """The secrets of one file, re-read when its modification time changes.

    The first read happens at construction, so a node with a bad file
    fails to start instead of running unauthenticated.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._stamp = self._stat()
        self._secrets = read_secrets(path)
        self._next_check = clock() + RECHECK_S
        self.reloads = 0

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def secrets(self) -> tuple[bytes, ...]:
        """The secrets now (signing secret first), re-reading the file if it changed."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + RECHECK_S
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._secrets = read_secrets(self.path)
                except SecretFileError as exc:
                    log.error("%s; keeping the secrets loaded before", exc)
                else:
                    self.reloads += 1
                    log.info("cluster secrets reloaded: %d accepted", len(self._secrets))
        return self._secrets
