"""Facts about the machine and the software versions, recorded with every result.

A ratio is only meaningful together with what produced it: the CPU count,
the client libraries, the redis-server build and the load generator.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from typing import Any

from benchlib.h2load import h2load_path
from benchlib.processes import redis_server_path


def _version_output(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        done = subprocess.run([path, flag], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def _package(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    """What this run ran on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {
            name: _package(name)
            for name in ("slotcache", "grpcio", "protobuf", "redis", "hiredis", "rich")
        },
        # Without hiredis, redis-py parses replies in pure Python: part of the client's cost.
        "redis_py_parser": "hiredis" if importlib.util.find_spec("hiredis") else "python",
        "redis_server": _version_output(redis_server_path(), "--version"),
        "h2load": _version_output(h2load_path(), "--version"),
    }
