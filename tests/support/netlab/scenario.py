"""Steps every network scenario shares: keys on a node's slots, settling, checking the history."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tests.support.history import OK, Op, Report, check
from tests.support.nodes import Nodes, NodeStubs
from tests.support.readback import own_claims, read_from_owners
from tests.support.workload import (
    keys_in_slots,
    node_id,
    single_primary_per_slot,
    slots_owned_by,
    wait_converged,
)

SETTLE_TIMEOUT_S = 20.0


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
