"""TLS: what mutual TLS costs W1, plaintext and TLS clients of the same node.

One standalone node listens on a plaintext port and, beside it, on a TLS
port requiring client certificates (a throwaway CA made for the run). W1
(64 asyncio tasks, GET/SET 50/50 over one HTTP/2 connection) runs in
alternating rounds through each port, so both sides share the node, its
keys and the machine's background load; only the transport differs.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from benchlib.client_workloads import (
    W1,
    LoadSpec,
    bound,
    load_details,
    w1_against_itself,
    window_details,
)
from benchlib.peers import SLOTCACHE, Node, Target
from benchlib.processes import slotcache_server
from benchlib.results import WorkloadResult
from benchlib.shared_servers import SharedServers
from slotcache.ctl.certs import generate_local
from slotcache.ctl.launcher import free_port

TITLE = "TLS overhead, W1: mutual TLS vs plaintext on the same node"
TLS, PLAIN = "tls", "plaintext"
REFERENCE = PLAIN


def run(stack: ExitStack, servers: SharedServers, work_dir: Path, spec: LoadSpec) -> WorkloadResult:
    """Measure W1 through the node's TLS port and its plaintext port in alternating rounds."""
    certs = generate_local(work_dir / "tls-certs")
    side_dir = work_dir / "tls-node"
    side_dir.mkdir(exist_ok=True)
    tls_port = free_port()
    flags = ("--tls-port", str(tls_port), *certs.server_flags(cluster=False))
    process = stack.enter_context(slotcache_server(side_dir, flags))
    plain = servers.loaded(Target.of(SLOTCACHE, process))
    secure = Target(SLOTCACHE, (Node(tls_port, process.pid),), tls=certs.client_options())
    sides = {TLS: bound(W1, secure), PLAIN: bound(W1, plain)}
    metrics, merged = w1_against_itself(sides, spec, TLS, PLAIN)
    return WorkloadResult(
        "tls",
        TITLE,
        REFERENCE,
        metrics,
        details={
            "load": load_details(W1, spec),
            "pid": process.pid,
            "tls": "TLS 1.3 (gRPC's BoringSSL), ECDSA P-256 certificates, client certificate "
            "required",
            **{side: window_details(res) for side, res in merged.items()},
        },
        notes=[
            "tls: one node, W1 through its TLS port (mutual TLS) and through its plaintext port "
            "in alternating rounds. Target: throughput ratio >= 0.85."
        ],
    )
