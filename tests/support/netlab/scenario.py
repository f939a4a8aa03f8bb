"""Steps every network scenario shares: keys on a node's slots, settling, checking the history."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.history import OK, Op, Report, check
from tests.support.netlab.clients import ClientProcess, start_client
from tests.support.netlab.lab import Host, NetLab
from tests.support.nodes import Nodes, NodeStubs
from tests.support.readback import own_claims, read_from_owners
from tests.support.workload import (
    NODE_TIMEOUT_MS,
    keys_in_slots,
    node_id,
    single_primary_per_slot,
    slots_owned_by,
    wait_converged,
)

SETTLE_TIMEOUT_S = 20.0
NODE_TIMEOUT_S = NODE_TIMEOUT_MS / 1000
# FAIL about 1.5 x node_timeout after the fault (docs/gossip.md), then the
# election's delay (docs/replication.md), with a margin for a loaded machine.
FAILOVER_BOUND_S = 2 * NODE_TIMEOUT_S + 1.5
# Before injecting a fault, every client has this many writes acknowledged.
WARM_ACKS = 20


def keys_of(nodes: Nodes, owner: int, prefix: str, count: int) -> list[bytes]:
    """``count`` keys on the slots node ``owner`` serves now."""
    slots = slots_owned_by(nodes[0].topology(), node_id(nodes[owner]))
    return keys_in_slots(prefix, slots, count)


def settle_and_check(nodes: Sequence[NodeStubs], ops: Sequence[Op]) -> tuple[Report, list[str]]:
    """Wait until every node agrees, then read every written key from its owner and judge.

    Returns the report and the owner id of every slot.
    """
    topology = wait_converged(nodes, SETTLE_TIMEOUT_S, "the nodes to agree after heal")
    owners = single_primary_per_slot(topology)
    keys = sorted({op.key for op in ops if op.writes})
    final = read_from_owners(nodes, keys)
    report = check(ops, final, time.monotonic(), own_claims(nodes))
    return report, owners


def first(ops: Sequence[Op], after: float, outcome: str = OK, error: str = "") -> Op | None:
    """The first op sent after ``after`` with ``outcome`` (and an error label starting so)."""
    found = [
        o for o in ops if o.sent >= after and o.outcome == outcome and o.error.startswith(error)
    ]
    return min(found, key=lambda o: o.done, default=None)


def last(ops: Sequence[Op], before: float, outcome: str = OK) -> Op | None:
    """The last op with ``outcome`` that completed before ``before``."""
    found = [o for o in ops if o.done < before and o.outcome == outcome]
    return max(found, key=lambda o: o.done, default=None)


def wait_until(seconds: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``seconds``."""
    time.sleep(max(0.0, seconds - time.monotonic()))


def start_writers(
    lab: NetLab,
    host: Host,
    nodes: Nodes,
    owner: int,
    workdir: Path,
    keys: int,
    async_keys: int | None = None,
) -> list[ClientProcess]:
    """Two writers in ``host`` on node ``owner``'s slots, sending to it directly.

    ``sync`` writes with ``min_replicas=1`` and ``async`` with ``min_replicas=0``,
    each on keys of its own (``async_keys`` of them, if given).
    """
    entry = [nodes[owner].address]
    return [
        start_client(
            lab, host, name, entry, keys_of(nodes, owner, name, count), workdir,
            "--min-replicas", mode,
        )
        for name, mode, count in (("sync", "1", keys), ("async", "0", async_keys or keys))
    ]  # fmt: skip
