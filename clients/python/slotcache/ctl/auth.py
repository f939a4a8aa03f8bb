"""clusterctl's credentials: ``--user``/``--token`` (or their variables), sent on every RPC.

They are set once per process, before a command runs, because every
connection clusterctl opens (to the node named, and to every node it
discovers) must carry them; threading them through each operation would
touch every command for a value none of them looks at. Library callers
(tests, scripts) use :func:`credentials` as a context manager. The token is
never printed: not in help (its default is not shown), not in errors.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slotcache._credentials import Metadata, credentials_metadata

USER_ENV = "SLOTCACHE_USER"
TOKEN_ENV = "SLOTCACHE_TOKEN"
TOKEN_FILE_ENV = "SLOTCACHE_TOKEN_FILE"

_metadata: Metadata = ()
_client_options: dict[str, str] = {}


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--user`` and ``--token``, defaulting to their environment variables."""
    parser.add_argument(
        "--user",
        default=os.environ.get(USER_ENV),
        metavar="NAME",
        help=f"the user --token belongs to (env {USER_ENV}); without it the token alone is sent",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        metavar="TOKEN",
        help=f"credentials for nodes with users (env {TOKEN_ENV}, which keeps it out of ps)",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get(TOKEN_FILE_ENV),
        metavar="PATH",
        help=f"read --token from this file, e.g. a mounted Secret (env {TOKEN_FILE_ENV})",
    )


def token_from(token: str | None, token_file: str | None) -> str | None:
    """The token given, or the first line of ``token_file`` (ValueError naming the file)."""
    if token_file is None:
        return token
    try:
        lines = Path(token_file).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"--token-file {token_file}: {exc.strerror}") from None
    if not lines or not lines[0].strip():
        raise ValueError(f"--token-file {token_file} is empty")
    return lines[0].strip()


def configure(token: str | None, user: str | None) -> None:
    """Use these credentials for every call from now on (ValueError for a bad combination)."""
    global _metadata, _client_options
    if user is not None and token is None:
        raise ValueError(f"--user needs --token (or {TOKEN_ENV})")
    password = token if user is not None else None
    _metadata = credentials_metadata(None if user is not None else token, user, password)
    if user is not None and token is not None:
        _client_options = {"user": user, "password": token}
    elif token is not None:
        _client_options = {"token": token}
    else:
        _client_options = {}


def metadata() -> Metadata | None:
    """The metadata every Admin call carries (None: no credentials)."""
    return _metadata or None


def client_options() -> dict[str, Any]:
    """The same credentials as ``slotcache.Client`` options."""
    return dict(_client_options)


@contextmanager
def credentials(token: str | None = None, user: str | None = None) -> Iterator[None]:
    """Use these credentials inside the block, then the previous ones again."""
    saved = _metadata, _client_options
    configure(token, user)
    try:
        yield
    finally:
        _restore(*saved)


def _restore(metadata: Metadata, options: dict[str, str]) -> None:
    global _metadata, _client_options
    _metadata, _client_options = metadata, options
