"""A real non-loopback client for protected-mode tests: a network namespace on a veth pair.

A test makes its own namespace and veth pair (addresses in a /30 of its
own, checked unused), runs its client inside the namespace, and removes
both on the way out, even when an assertion fails. It needs root; without
it the test is skipped and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from slotcache.ctl.launcher import ServerProcess


@dataclass(frozen=True)
class Link:
    """A namespace joined to this host by a veth pair."""

    namespace: str
    host_ip: str
    namespace_ip: str

    def run(self, script: str, *args: str) -> dict[str, str]:
        """Run a Python ``script`` inside the namespace; the JSON object it prints."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result: dict[str, str] = json.loads(done.stdout)
        return result


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _free_subnet() -> str:
    """``10.251.N`` for a /30 at ``.0`` that no interface of this host uses."""
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    for n in range(os.getpid() % 200, 256):
        prefix = f"10.251.{n}"
        if f"{prefix}." not in used:
            return prefix
    pytest.skip("no unused 10.251.N.0/30 subnet for the test's veth pair")


@contextmanager
def namespace_link() -> Iterator[Link]:
    """A fresh namespace and veth pair, removed on the way out whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("protected mode needs a non-loopback client: creating a namespace needs root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    tag = f"{os.getpid() % 100000}"
    namespace, host_if, ns_if = f"scacl{tag}", f"scah{tag}", f"scan{tag}"
    prefix = _free_subnet()
    try:
        _ip("netns", "add", namespace)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", namespace)
        _ip("addr", "add", f"{prefix}.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", namespace, "addr", "add", f"{prefix}.2/30", "dev", ns_if)
        _ip("-n", namespace, "link", "set", ns_if, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        yield Link(namespace, f"{prefix}.1", f"{prefix}.2")
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


@contextmanager
def server_on_all_addresses(data_dir: Path, *flags: str) -> Iterator[ServerProcess]:
    """A server listening on every address (so the namespace reaches it), stopped after."""
    server = ServerProcess(data_dir, host="0.0.0.0", extra_args=flags)
    try:
        yield server.start()
    finally:
        server.stop()
