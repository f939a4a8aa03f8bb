"""SIGSTOP/SIGCONT of primaries: no split brain, and a stale replica does not stand for election."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest

from slotcache.v1 import admin_pb2, cache_pb2
from tests.support.nodes import Nodes, peer_flags, slot_of, wait_for
from tests.support.workload import (
    NODE_TIMEOUT_MS,
    Writer,
    all_acks,
    audit,
    error_summary,
    join_writers,
    key_log,
    node_id,
    read_values,
    role,
    run_writers,
    single_primary_per_slot,
    slots_owned_by,
    start_cluster,
    wait_converged,
    written_keys,
)

pytestmark = pytest.mark.slow

STOPPED_S = 3 * NODE_TIMEOUT_MS / 1000
# A replica whose link to its primary has been down longer than this does not
# stand for election (Redis: node_timeout x cluster-replica-validity-factor 10,
# plus the repl-ping period; here plus 1 s).
VALIDITY_S = (NODE_TIMEOUT_MS * 10 + 1000) / 1000


def owner_of_slot(node, slot: int) -> str | None:
    try:
        topology = node.topology()
    except grpc.RpcError:
        return None
    for n in topology.nodes:
        if any(r.start <= slot <= r.end for r in n.slots):
            return n.id
    return None


def test_a_stopped_primary_comes_back_as_a_replica_without_split_brain(factory, report_figure):
    cluster = start_cluster(factory, 3, 1)
    nodes = Nodes(cluster.addresses)
    old_client = Nodes([cluster.addresses[0]])  # talks to the stopped primary directly
    try:
        old_id, replica_id = node_id(nodes[0]), node_id(nodes[3])
        victim_slots = slots_owned_by(nodes[1].topology(), old_id)
        probe_slot = victim_slots[0]
        in_victim = set(victim_slots)
        stop = threading.Event()
        entries = [nodes[1], nodes[2]]
        writers = [
            Writer(f"w{i}", entries, [f"w{i}:{j}".encode() for j in range(300)], stop, 0)
            for i in range(4)
        ]
        # Keeps writing to the old primary itself; its acknowledgements after the
        # stop are the split-brain window (writes a deposed primary accepts).
        direct = Writer(
            "direct",
            [old_client[0]],
            [k for k in (f"direct:{j}".encode() for j in range(2000)) if slot_of(k) in in_victim],
            stop,
            0,
        )
        switched: dict[int, float] = {}
        try:
            run_writers([*writers, direct])
            time.sleep(1.0)
            stopped_at = time.monotonic()
            cluster.nodes[0].send_signal(signal.SIGSTOP)
            while time.monotonic() < stopped_at + STOPPED_S:
                for entry in (1, 2):
                    if entry not in switched and owner_of_slot(nodes[entry], probe_slot) == (
                        replica_id
                    ):
                        switched[entry] = time.monotonic()
                time.sleep(0.02)
            resumed_at = time.monotonic()
            cluster.nodes[0].send_signal(signal.SIGCONT)
            assert set(switched) == {1, 2}, "the replica was not promoted while the primary slept"
            topology = wait_converged(nodes, 10, "every node to agree after SIGCONT")
            converged_at = time.monotonic()
            time.sleep(1.0)
        finally:
            join_writers([*writers, direct], stop)

        # Every node, the resumed one included, sees the same single owner per slot.
        views = [n.topology() for n in nodes]
        for view in views:
            owners = single_primary_per_slot(view)
            assert {owners[s] for s in victim_slots} == {replica_id}
        old = next(n for n in topology.nodes if n.id == old_id)
        assert old.role == cache_pb2.ROLE_REPLICA and old.primary_id == replica_id
        assert role(nodes[0]) == "replica"
        assert role(nodes[3]) == "primary"

        # Writes the new primary acknowledged (sent through an entry node once it
        # routed the slots there) are all readable, with their values.
        def sent_after_switch(key: bytes, sent: float, entry: int) -> bool:
            return slot_of(key) in in_victim and sent >= switched[entry + 1]

        keys = written_keys(writers)
        read = read_values(nodes[1], keys)
        result = audit(writers, read)
        lost = set(result.lost)
        new_primary_acks = [
            a for a in all_acks(writers) if sent_after_switch(a.key, a.sent, a.entry)
        ]
        lost_new = [a for a in new_primary_acks if a.key in lost]
        lost_after_resume = [k for k in lost if key_log(writers, k).acked_at >= resumed_at]
        direct_result = audit([direct], read_values(nodes[1], direct.keys))
        # The stopped primary's own acknowledgements after SIGCONT, of writes that
        # then vanished: it served as the owner until it heard of the failover.
        stale = sorted(
            key_log([direct], k).acked_at - resumed_at
            for k in direct_result.lost
            if key_log([direct], k).acked_at >= resumed_at
        )
        report_figure(
            f"SIGSTOP of a primary for {STOPPED_S * 1000:.0f} ms: replica promoted after "
            f"{(min(switched.values()) - stopped_at) * 1000:.0f} ms (as seen by the entry nodes); "
            f"after SIGCONT every view agreed on one primary per slot in "
            f"{(converged_at - resumed_at) * 1000:.0f} ms with the old primary a replica; "
            f"{len(new_primary_acks)} writes acknowledged by the new primary, lost "
            f"{len(lost_new)}; writers through other nodes lost {len(result.lost)} of "
            f"{result.acknowledged} keys ({len(lost_after_resume)} of them acknowledged after "
            f"SIGCONT); "
            f"a client of the old primary lost "
            f"{len(direct_result.lost)} keys, {len(stale)} of them acknowledged by the old "
            f"primary after SIGCONT"
            + (f" (up to {stale[-1] * 1000:.0f} ms after it)" if stale else "")
            + f"; errors: {error_summary([*writers, direct])}"
        )
        assert len(new_primary_acks) > 0
        assert lost_new == []
        assert result.reordered == [] and result.foreign == []
    finally:
        old_client.close()
        nodes.close()


def test_a_replica_too_far_behind_does_not_stand_for_election(factory, report_figure):
    """Its link down longer than the validity window, the replica waits for an operator."""
    cluster = start_cluster(factory, 3, 1)
    nodes = Nodes(cluster.addresses)
    try:
        failed_id = node_id(nodes[0])
        # With two of three primaries stopped no majority can mark anyone FAIL,
        # so node 3's link to node 0 stays down without a failover...
        cluster.nodes[0].send_signal(signal.SIGSTOP)
        cluster.nodes[1].send_signal(signal.SIGSTOP)
        time.sleep(VALIDITY_S + 0.5)
        # ...until node 1 returns: node 0 is then marked FAIL by a majority.
        cluster.nodes[1].send_signal(signal.SIGCONT)
        wait_for(
            lambda: all("fail" in peer_flags(nodes[i].state(), failed_id) for i in (1, 2, 3)),
            10,
            "node 0 to be marked FAIL",
        )
        failed_at = time.monotonic()
        # A replica with fresh data would be promoted within about a second.
        while time.monotonic() < failed_at + 3.0:
            assert role(nodes[3]) == "replica"
            assert not nodes[1].topology().cluster_ok
            time.sleep(0.1)
        # An operator can still promote it (Redis: CLUSTER FAILOVER FORCE).
        reply = nodes[3].admin.Failover(
            admin_pb2.FailoverRequest(mode=admin_pb2.FAILOVER_MODE_FORCE, wait_ms=5000), timeout=10
        )
        forced_at = time.monotonic()
        assert reply.promoted
        survivors = [n for i, n in enumerate(nodes) if i != 0]
        topology = wait_converged(survivors, 10, "the survivors to accept the forced failover")
        owners = single_primary_per_slot(topology)
        assert node_id(nodes[3]) in owners
        report_figure(
            f"replica whose link was down {VALIDITY_S + 0.5:.1f} s (> validity "
            f"{VALIDITY_S:.0f} s): still a replica 3 s after its primary was marked FAIL; "
            f"promoted by FAILOVER FORCE in {(forced_at - failed_at - 3.0) * 1000:.0f} ms"
        )
    finally:
        nodes.close()
