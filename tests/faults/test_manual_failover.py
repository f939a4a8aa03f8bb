"""Manual failover under load: graceful loses nothing; force and takeover promote the replica."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from slotcache.v1 import admin_pb2, cache_pb2
from tests.support.nodes import Nodes, key_in_slot, slot_of, wait_for
from tests.support.workload import (
    REPLICA_READ,
    Writer,
    all_acks,
    audit,
    error_summary,
    join_writers,
    key_log,
    node_id,
    read_values,
    replica_matches_primary,
    role,
    run_writers,
    single_primary_per_slot,
    slots_owned_by,
    start_cluster,
    stats,
    wait_converged,
    written_keys,
)

pytestmark = pytest.mark.slow

LOAD_S = 1.5
# A graceful failover pauses the primary until the replica caught up, then
# holds an election: well under Redis's 5 s manual-failover timeout.
GRACEFUL_BOUND_S = 3.0


def failover(node, mode: admin_pb2.FailoverMode.ValueType, wait_ms: int = 5000) -> bool:
    reply = node.admin.Failover(
        admin_pb2.FailoverRequest(mode=mode, wait_ms=wait_ms), timeout=wait_ms / 1000 + 5
    )
    return bool(reply.promoted)


def writers_for(nodes: Nodes, stop: threading.Event, min_replicas: int, count: int = 4):
    # Through every primary, the one failing over included: its held writes
    # must be routed on to the new primary.
    entries = [nodes[0], nodes[1], nodes[2]]
    return [
        Writer(
            f"mr{min_replicas}w{i}",
            entries,
            [f"mr{min_replicas}w{i}:{j}".encode() for j in range(300)],
            stop,
            min_replicas,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("min_replicas", [0, 1])
def test_graceful_failover_under_load_loses_nothing(factory, report_figure, min_replicas):
    cluster = start_cluster(factory, 3, 1)
    nodes = Nodes(cluster.addresses)
    try:
        old_id, new_id = node_id(nodes[0]), node_id(nodes[3])
        moving = set(slots_owned_by(nodes[1].topology(), old_id))

        def on_moving(key: bytes) -> bool:
            return slot_of(key) in moving

        stop = threading.Event()
        writers = writers_for(nodes, stop, min_replicas)
        try:
            run_writers(writers)
            time.sleep(LOAD_S)
            started = time.monotonic()
            promoted = failover(nodes[3], admin_pb2.FAILOVER_MODE_GRACEFUL)
            took = time.monotonic() - started
            assert promoted
            # The old primary follows the new one (and, for min_replicas=1
            # writes, is back in sync so that they succeed again).
            wait_for(
                lambda: stats(nodes[3]).get("repl.replicas_in_sync") == 1,
                10,
                "the old primary to replicate the new one",
            )
            resynced = time.monotonic() - started
            time.sleep(1.0)
        finally:
            join_writers(writers, stop)
        topology = wait_converged(nodes, 10, "every node to agree after the failover")
        owners = single_primary_per_slot(topology)
        assert {owners[s] for s in moving} == {new_id}
        old = next(n for n in topology.nodes if n.id == old_id)
        assert old.role == cache_pb2.ROLE_REPLICA and old.primary_id == new_id
        assert role(nodes[0]) == "replica"

        result = audit(writers, read_values(nodes[1], written_keys(writers)))
        acks = [a for a in all_acks(writers) if on_moving(a.key)]
        before = [a for a in acks if a.done < started]
        after = [a for a in acks if a.sent > started + took]
        # The longest stretch without an acknowledged write on the moving slots.
        times = [started] + [a.done for a in acks if a.done >= started]
        gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
        new_stats = stats(nodes[3])
        report_figure(
            f"graceful failover under min_replicas={min_replicas} load: promoted in "
            f"{took * 1000:.0f} ms, old primary in sync as its replica after "
            f"{resynced * 1000:.0f} ms ({new_stats.get('repl.partial_syncs_served', 0)} partial, "
            f"{new_stats.get('repl.full_syncs_served', 0)} full sync); longest pause of writes "
            f"on the moved slots {gap * 1000:.0f} ms; {result.acknowledged} keys acknowledged "
            f"({len(before)} writes on the moved slots before, {len(after)} after), lost "
            f"{len(result.lost)}; writer errors: {error_summary(writers)}"
        )
        assert before and after
        assert result.lost == [], f"graceful failover lost {len(result.lost)} acknowledged writes"
        assert result.reordered == [] and result.foreign == []
        assert took <= GRACEFUL_BOUND_S
        # The old primary's data is a prefix of the new primary's history: it
        # continues from its offset instead of loading everything again.
        assert new_stats.get("repl.partial_syncs_served") == 1
        assert new_stats.get("repl.full_syncs_served", 0) == 0
    finally:
        nodes.close()


@pytest.mark.parametrize("min_replicas", [0, 1])
def test_force_and_takeover_promote_the_replica(factory, report_figure, min_replicas):
    """Both promote at once; min_replicas=1 writes survive even these (the replica had them)."""
    cluster = start_cluster(factory, 3, 1)
    nodes = Nodes(cluster.addresses)
    try:
        ids = [node_id(n) for n in nodes]
        stop = threading.Event()
        writers = writers_for(nodes, stop, min_replicas)
        figures = []
        started_at: dict[int, float] = {}
        try:
            run_writers(writers)
            time.sleep(1.0)
            for mode, replica, primary in (
                (admin_pb2.FAILOVER_MODE_FORCE, 4, 1),
                (admin_pb2.FAILOVER_MODE_TAKEOVER, 5, 2),
            ):
                started = started_at[replica] = time.monotonic()
                assert failover(nodes[replica], mode), f"{mode} did not promote node {replica}"
                figures.append((time.monotonic() - started) * 1000)
                topology = wait_converged(nodes, 10, f"every node to agree after failover {mode}")
                old = next(n for n in topology.nodes if n.id == ids[primary])
                assert old.role == cache_pb2.ROLE_REPLICA and old.primary_id == ids[replica]
                owners = single_primary_per_slot(topology)
                assert ids[replica] in owners and ids[primary] not in owners
            time.sleep(0.5)
        finally:
            join_writers(writers, stop)
        result = audit(writers, read_values(nodes[0], written_keys(writers)))
        # Each deposed primary now holds exactly its new primary's data.
        owners = single_primary_per_slot(nodes[0].topology())
        for replica, primary in ((4, 1), (5, 2)):
            moved = [k for k in written_keys(writers) if owners[slot_of(k)] == ids[replica]]
            _, differ = replica_matches_primary(nodes[replica], nodes[primary], moved)
            assert differ == [], (
                f"node {primary} differs from its new primary on {len(differ)} keys"
            )
        # When the lost writes were acknowledged, from the failover call on their slots.
        windows = sorted(
            (key_log(writers, k).acked_at - started_at[ids.index(owners[slot_of(k)])]) * 1000
            for k in result.lost
        )
        report_figure(
            f"FORCE failover promoted in {figures[0]:.0f} ms, TAKEOVER in {figures[1]:.0f} ms "
            f"(min_replicas={min_replicas} load; these modes do not wait for the replica to "
            f"catch up): "
            f"lost {len(result.lost)} of {result.acknowledged} acknowledged keys"
            + (
                f", acknowledged {windows[0]:.0f}..{windows[-1]:.0f} ms after the failover call "
                "(not yet replicated when the replica took over, or accepted by the old "
                "primary before it heard of the promotion)"
                if windows
                else ""
            )
            + f"; writer errors: {error_summary(writers)}"
        )
        assert result.reordered == [] and result.foreign == []
        if min_replicas:
            assert result.lost == [], f"{len(result.lost)} acknowledged min_replicas=1 writes lost"
    finally:
        nodes.close()


def test_replicate_moves_a_replica_to_another_primary_at_once(factory, report_figure):
    """Admin.Replicate on a replica of a live primary: it follows the new one right away."""
    cluster = start_cluster(factory, 3, 1)
    nodes = Nodes(cluster.addresses)
    try:
        ids = [node_id(n) for n in nodes]
        slot = slots_owned_by(nodes[0].topology(), ids[1])[0]
        key = key_in_slot(b"moved", slot)
        started = time.monotonic()
        nodes[3].admin.Replicate(admin_pb2.ReplicateRequest(primary_id=ids[1]), timeout=5)
        wait_for(
            lambda: (
                stats(nodes[1]).get("repl.replicas_in_sync") == 2
                and stats(nodes[0]).get("repl.replicas") == 0
            ),
            5,
            "node 3 to move from node 0 to node 1",
        )
        moved_s = time.monotonic() - started
        nodes[1].set(key, b"v")
        wait_for(
            lambda: nodes[3].get(key, REPLICA_READ) == b"v", 5, "node 3 to serve node 1's data"
        )
        report_figure(
            f"Admin.Replicate to another live primary: in sync in {moved_s * 1000:.0f} ms"
        )
    finally:
        nodes.close()
