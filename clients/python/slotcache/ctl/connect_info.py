"""How to reach a freshly started local cluster: the text ``clusterctl up`` prints.

Pure: it only formats addresses and commands, so the instructions can be
tested for being runnable (the Python snippet compiles, the JSON in the
grpcurl commands parses) without starting anything. Where the programs are
found is the caller's business; :func:`command_for` only words it.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slotcache.ctl.transport import ENV_CA, ENV_CERT, ENV_KEY

EXAMPLE_KEY = b"greeting"
EXAMPLE_VALUE = b"hello"


@dataclass(frozen=True)
class TlsFiles:
    """The CA and the client certificate and key a TLS cluster's clients use, as typed paths."""

    ca: str
    cert: str
    key: str

    def env(self) -> dict[str, str]:
        """The environment variables that give clusterctl these files."""
        return {ENV_CA: self.ca, ENV_CERT: self.cert, ENV_KEY: self.key}


def python_snippet(address: str, tls: TlsFiles | None = None) -> str:
    """A minimal, runnable use of the SDK against one node (any node serves any key)."""
    setup, option = "", ""
    if tls is not None:
        setup = f"tls = slotcache.TlsOptions(ca={tls.ca!r}, cert={tls.cert!r}, key={tls.key!r})\n"
        option = ", tls=tls"
    return (
        "import slotcache\n"
        "\n"
        f"{setup}"
        f'with slotcache.Client("{address}"{option}) as cache:\n'
        f"    cache.set({EXAMPLE_KEY!r}, {EXAMPLE_VALUE!r})\n"
        f"    print(cache.get({EXAMPLE_KEY!r}))\n"
    )


def grpcurl_commands(address: str, tls: TlsFiles | None = None) -> list[str]:
    """Commands for grpcurl, which finds the methods by reflection; JSON carries bytes as base64."""
    key = base64.b64encode(EXAMPLE_KEY).decode()
    value = base64.b64encode(EXAMPLE_VALUE).decode()
    calls = [
        ("Set", {"key": key, "value": value}),
        ("Get", {"key": key}),
    ]
    security = "-plaintext"
    if tls is not None:
        security = " ".join(
            f"-{flag} {shlex.quote(path)}"
            for flag, path in (("cacert", tls.ca), ("cert", tls.cert), ("key", tls.key))
        )
    return [
        f"grpcurl {security} -d {shlex.quote(json.dumps(body))} {address} slotcache.v1.Cache/{rpc}"
        for rpc, body in calls
    ]


def env_command(tls: TlsFiles) -> str:
    """The shell line that makes later clusterctl commands use TLS."""
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in tls.env().items())


def clusterctl_commands(address: str, ctl: str = "clusterctl") -> list[str]:
    """The same write and read with clusterctl, which needs nothing more installed."""
    key, value = EXAMPLE_KEY.decode(), EXAMPLE_VALUE.decode()
    return [f"{ctl} set {address} {key} {value}", f"{ctl} get {address} {key}"]


def command_for(program: str, name: str, on_path: str | None, cwd: str) -> str:
    """What to type to run ``program`` again: ``name`` if PATH finds that very file.

    Otherwise its path, relative when it is inside ``cwd``: ``.venv/bin/clusterctl``
    for ``make run``'s venv, which is not on PATH unless activated (a bare
    ``clusterctl`` would be "command not found"). ``on_path`` is what PATH
    finds for ``name`` (resolved), or None.
    """
    if on_path is not None and on_path == program:
        return name
    relative = os.path.relpath(program, cwd)
    return shlex.quote(program if relative.startswith("..") else relative)


def down_command(folder: str, default_folder: str, ctl: str = "clusterctl") -> str:
    """The command that stops the cluster started from ``folder``."""
    if folder == default_folder:
        return f"{ctl} down"
    return f"{ctl} down --dir {shlex.quote(folder)}"


def connect_info(
    addresses: Sequence[str],
    folder: str,
    default_folder: str,
    ctl: str = "clusterctl",
    python: str = "python3",
    tls: TlsFiles | None = None,
) -> dict[str, Any]:
    """Everything a person or a script needs to use and stop the cluster.

    ``ctl`` and ``python`` are how to type clusterctl and the Python that
    has slotcache installed (see :func:`command_for`). With ``tls``, every
    way of connecting presents the client certificate; clusterctl gets it
    from the environment, set by the ``tls_env`` line.
    """
    first = addresses[0]
    info: dict[str, Any] = {
        "addresses": list(addresses),
        "python_command": python,
        "python": python_snippet(first, tls),
        "clusterctl": clusterctl_commands(first, ctl),
        "grpcurl": grpcurl_commands(first, tls),
        "inspect": [f"{ctl} nodes {first}", f"{ctl} check {first}"],
        "stop": down_command(folder, default_folder, ctl),
    }
    if tls is not None:
        info["tls"] = {"ca": tls.ca, "cert": tls.cert, "key": tls.key}
        info["tls_env"] = env_command(tls)
    return info
