"""Runs h2load, the C HTTP/2 load generator, against a gRPC method.

A C client needs far less CPU per request than any Python client, so on a
2-core machine it measures the server rather than the load generator.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib import h2load_output
from benchlib.h2load_output import H2loadSummary

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


@dataclass(frozen=True)
class H2loadSettings:
    """Connections (-c), concurrent streams per connection (-m) and threads (-t)."""

    clients: int = 4
    streams: int = 32
    threads: int = 1


def h2load_path() -> str | None:
    """Where h2load is, or None when nghttp2-client is not installed."""
    return shutil.which("h2load")


def command(
    path: str, url: str, body_file: Path, settings: H2loadSettings, duration_s: float
) -> list[str]:
    """The h2load command line for POSTing ``body_file`` to ``url`` for ``duration_s``."""
    args = [
        path,
        "-c", str(settings.clients),
        "-m", str(settings.streams),
        "-t", str(settings.threads),
        "-D", f"{max(1, round(duration_s * 1000))}ms",
        "--data", str(body_file),
    ]  # fmt: skip
    for header in GRPC_HEADERS:
        args += ["-H", header]
    return [*args, url]


def start(args: list[str]) -> subprocess.Popen[str]:
    """Start h2load; :func:`finish` collects its result."""
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> H2loadSummary:
    """Wait for h2load and parse its summary; raise with its output if it failed."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited with {proc.returncode}:\n{out}")
    return h2load_output.parse(out)
