"""A partition between the source and the target of a slot migration, while it runs.

Three primaries; node 1 imports a third of node 0's slots, which hold
preloaded keys, while a client keeps writing keys of those slots through
node 0. Mid-migration, nodes 0 and 1 are cut from each other (each still
reaches node 2, so the cluster stays up and nothing is failed over). After
heal the migration must end, done or failed, and every slot must have
exactly one owner with no key lost: neither the preloaded ones nor what the
client had acknowledged.
"""

from __future__ import annotations

import time

import pytest

from slotcache.v1 import admin_pb2, cache_pb2
from tests.support.history import OK, SET, Op
from tests.support.netlab.clients import start_client, stop_all, wait_acknowledged
from tests.support.netlab.scenario import WARM_ACKS, settle_and_check
from tests.support.netlab.servers import start_lab_cluster
from tests.support.nodes import Nodes, NodeStubs, wait_for
from tests.support.workload import NODE_TIMEOUT_MS, keys_in_slots, node_id, slots_owned_by

pytestmark = pytest.mark.slow

SOURCE, TARGET = 0, 1
PRELOAD = 30_000
CUT_S = 3 * NODE_TIMEOUT_MS / 1000
# The target gives up on a source silent for 10 s (cluster/migration/target.py).
END_TIMEOUT_S = 40.0
FINAL = (admin_pb2.MIGRATION_STATE_DONE, admin_pb2.MIGRATION_STATE_FAILED)


def preload(node: NodeStubs, keys: list[bytes]) -> list[Op]:
    """Write ``keys`` with MSet; each as an acknowledged op of a ``preload`` history."""
    ops = []
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        sent = time.monotonic()
        node.cache.MSet(
            cache_pb2.MSetRequest(entries=[cache_pb2.SetRequest(key=k, value=k) for k in part]),
            timeout=30,
        )
        done = time.monotonic()
        ops.extend(Op("preload", SET, k, k, sent, done, OK) for k in part)
    return ops


def migration(node: NodeStubs, migration_id: str) -> admin_pb2.MigrationProgress | None:
    reply = node.admin.MigrationStatus(
        admin_pb2.MigrationStatusRequest(migration_id=migration_id), timeout=5
    )
    return reply.migrations[0] if reply.migrations else None


def wait_ended(node: NodeStubs, migration_id: str, what: str) -> admin_pb2.MigrationProgress:
    """The migration's record on ``node`` once it is done or failed."""

    def ended() -> admin_pb2.MigrationProgress | None:
        record = migration(node, migration_id)
        return record if record is not None and record.state in FINAL else None

    return wait_for(ended, END_TIMEOUT_S, what, interval=0.1)


def test_a_partition_between_source_and_target_mid_migration_loses_nothing(
    lab, factory, tmp_path, report_figure
):
    lc = start_lab_cluster(lab, factory, 3, 0, "--migration-cpu-percent", "5")
    nodes = Nodes(lc.addresses)
    try:
        source_id = node_id(nodes[SOURCE])
        owned = slots_owned_by(nodes[SOURCE].topology(), source_id)
        moving = owned[: len(owned) // 3]
        preload_ops = preload(nodes[SOURCE], keys_in_slots("pre", moving, PRELOAD))
        client_host = lab.add_host("c0")
        writer = start_client(
            lab, client_host, "writer", [lc.addresses[SOURCE]],
            keys_in_slots("live", moving, 500), tmp_path / "clients", "--timeout", "5",
        )  # fmt: skip
        try:
            wait_acknowledged([writer], WARM_ACKS)
            ranges = [cache_pb2.SlotRange(start=s, end=s) for s in moving]
            reply = nodes[TARGET].admin.ImportSlots(
                admin_pb2.ImportSlotsRequest(source_id=source_id, ranges=ranges), timeout=10
            )
            mid = wait_for(
                lambda: (
                    (m := migration(nodes[TARGET], reply.migration_id))
                    and m.slots_done >= 0.1 * len(moving)
                    and m
                ),
                30,
                "the migration to be under way",
                interval=0.01,
            )
            lab.cut([lc.hosts[SOURCE]], [lc.hosts[TARGET]])
            cut_at = time.monotonic()
            time.sleep(CUT_S)
            lab.heal()
            ended = wait_ended(nodes[TARGET], reply.migration_id, "the migration to end after heal")
            ended_at = time.monotonic()
            source_side = wait_ended(nodes[SOURCE], reply.migration_id, "the source's side to end")
            time.sleep(0.5)
        finally:
            ops = stop_all([writer])
        report, owners = settle_and_check(list(nodes), preload_ops + ops)
        target_id = node_id(nodes[TARGET])
        moved = sum(1 for s in moving if owners[s] == target_id)
        state = admin_pb2.MigrationState.Name(ended.state)
        report_figure(
            f"partition between migration source and target ({len(moving)} slots, {PRELOAD} "
            f"keys, cut at {mid.slots_done} slots done, for {CUT_S:.0f} s): migration "
            f"{state} ({ended.error or 'no error'}) {ended_at - cut_at:.1f} s after the cut, "
            f"{moved} of {len(moving)} slots on the target; writer acknowledged "
            f"{sum(o.outcome == OK for o in ops)}; {report.summary()}"
        )
        assert ended.state == source_side.state
        assert moved in (0, len(moving)), "the migration moved only some of its slots"
        assert not report.unowned_slots and not report.doubly_owned
        assert report.acknowledged[0] >= PRELOAD
        assert report.lost_count(0) == 0, report.lost[0][:5]
        assert not report.foreign and not report.resurrected
    finally:
        nodes.close()
