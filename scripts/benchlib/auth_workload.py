"""Users: what authentication and per-operation permission checks cost, slotcache against itself.

W1 (64 asyncio tasks, GET/SET 50/50) runs in alternating rounds against two
standalone nodes started side by side, both without TLS: ``on`` has an ACL
file and the client sends a token; its user is narrowed to the benchmark's
keys by a pattern (``~key:*``), so every operation's key is checked, as for
a typical application user (a user allowed every key skips even that).
``off`` has no users and ``--protected-mode no``, so no check runs at all.
Both sides see the same background load, so the ratios hold on a shared
machine.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from benchlib.client_workloads import W1, LoadSpec, bound, load_details, measure, window_details
from benchlib.peers import SLOTCACHE, Target
from benchlib.processes import slotcache_server
from benchlib.results import Metric, WorkloadResult, compare
from benchlib.shared_servers import SharedServers

TITLE = "auth overhead, W1: a user with a key pattern vs no users (no TLS)"
ON, OFF = "on", "off"
REFERENCE = OFF
# Not a secret: it only opens the benchmark's own throwaway node.
TOKEN = "bench-token"
USER_RULES = "~key:* +@read +@write +@admin"


def flags(side: str, work_dir: Path) -> tuple[str, ...]:
    """The server flags of one side (the ACL file is written for ``on``)."""
    if side == OFF:
        return ("--metrics-port", "0", "--protected-mode", "no")
    acl = work_dir / "users.acl"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    acl.write_text(f"user bench on #{digest} {USER_RULES}\n")
    return ("--metrics-port", "0", "--acl-file", str(acl))


def run(stack: ExitStack, servers: SharedServers, work_dir: Path, spec: LoadSpec) -> WorkloadResult:
    """Measure W1 on the ``on`` and ``off`` nodes in alternating rounds."""
    targets: dict[str, Target] = {}
    for side in (ON, OFF):
        side_dir = work_dir / f"auth-{side}"
        side_dir.mkdir(exist_ok=True)
        process = stack.enter_context(slotcache_server(side_dir, flags(side, side_dir)))
        token = TOKEN if side == ON else None
        targets[side] = servers.loaded(replace(Target.of(SLOTCACHE, process), token=token))
    merged = measure({side: bound(W1, t) for side, t in targets.items()}, spec)
    figures = {side: W1.figures(res, spec) for side, res in merged.items()}
    metrics = [_named(m) for m in compare(W1.metrics, figures[ON], figures[OFF])]
    return WorkloadResult(
        "auth",
        TITLE,
        REFERENCE,
        metrics,
        details={
            "load": load_details(W1, spec),
            "user": USER_RULES,
            "pids": {side: t.pid for side, t in targets.items()},
            **{side: window_details(res) for side, res in merged.items()},
        },
        notes=[
            f"auth on: an ACL file, a token on every call and stream, user {USER_RULES!r} "
            "(each key checked); off: no users, --protected-mode no. Target: throughput "
            "ratio >= 0.97."
        ],
    )


def _named(metric: Metric) -> Metric:
    return replace(metric, name=f"w1_{metric.name}_auth_on_vs_off", sides=(ON, OFF))
