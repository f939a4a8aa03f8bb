"""Reading and writing the node file (``nodes.json`` in the data directory).

Writes are atomic (temporary file, fsync, rename, fsync of the directory),
so a crash leaves either the old file or the new one, never a torn one: the
node id, epochs and votes it holds must survive restarts exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .membership.machine import Membership
from .membership.snapshot import snapshot

NODE_FILE = "nodes.json"


def node_file(data_dir: Path) -> Path:
    """Where the node file lives."""
    return data_dir / NODE_FILE


def load(path: Path) -> dict[str, Any] | None:
    """The saved state, or None for a fresh node; a corrupt file is an error, not a reset."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"{path} is not valid JSON ({exc}); refusing to start with a new id"
        raise ValueError(message) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a node description")
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    """Replace the node file atomically and durably."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class NodeFile:
    """A node's file as the membership runtime's store: every save is a snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, membership: Membership) -> None:
        """Write ``membership``'s configuration; durable when this returns."""
        save(self.path, snapshot(membership))
