"""A primary cut off in a minority, with a client on its side (Redis Cluster's split-brain case).

Six nodes (three primaries, a replica each); node 0 and one client process
are cut off from the other five. The minority primary must start refusing
writes within node_timeout plus its margin; the majority promotes node 0's
replica; after heal every slot has one primary. Writes acknowledged with
``min_replicas=1`` are all there; those acknowledged with ``min_replicas=0``
by the minority primary after the cut are lost, and counted.
"""

from __future__ import annotations

import time

import pytest

from tests.support.history import OK, REFUSED
from tests.support.netlab.clients import start_client, stop_all, wait_acknowledged
from tests.support.netlab.scenario import (
    FAILOVER_BOUND_S,
    NODE_TIMEOUT_S,
    WARM_ACKS,
    first,
    keys_of,
    last,
    settle_and_check,
    start_writers,
    wait_until,
)
from tests.support.netlab.servers import start_lab_cluster
from tests.support.nodes import Nodes, wait_for
from tests.support.readback import PROMOTED, log_events
from tests.support.workload import NODE_TIMEOUT_MS, node_id, role

pytestmark = pytest.mark.slow

# A minority primary refuses once it has marked a majority of primaries PFAIL:
# a ping unanswered for node_timeout, and the ping goes out up to
# node_timeout/2 after the last pong (docs/gossip.md), then a tick or two.
REFUSE_BOUND_S = 1.5 * NODE_TIMEOUT_S + 0.5
PARTITION_S = 4 * NODE_TIMEOUT_S
KEYS = 150


def test_minority_primary_refuses_writes_and_loses_only_async_ones(
    lab, factory, tmp_path, report_figure
):
    lc = start_lab_cluster(lab, factory, 3, 1)
    nodes = Nodes(lc.addresses)
    try:
        minority_node, replica = 0, 3
        replica_id = node_id(nodes[replica])
        outside_keys = keys_of(nodes, minority_node, "outside", KEYS)
        inside = lab.add_host("c-inside")
        outside = lab.add_host("c-outside")
        work = tmp_path / "clients"
        clients = [
            *start_writers(lab, inside, nodes, minority_node, work, KEYS),
            # Through node 1, which forwards to whoever owns the slot in its view.
            start_client(lab, outside, "outside", [lc.addresses[1]], outside_keys, work),
        ]
        try:
            wait_acknowledged(clients, WARM_ACKS)
            minority = [lc.hosts[minority_node], inside]
            majority = [h for h in lc.hosts if h not in minority] + [outside]
            lab.cut(minority, majority)
            cut_at = time.monotonic()
            wait_for(lambda: role(nodes[replica]) == "primary", FAILOVER_BOUND_S + 5, "failover")
            wait_until(cut_at + PARTITION_S)
        finally:
            # Stopped before heal: a write after heal would overwrite, and so
            # hide, what the minority acknowledged and lost.
            ops = stop_all(clients)
        lab.heal()
        wait_for(lambda: role(nodes[minority_node]) == "replica", 15, "the old primary to follow")
        report, owners = settle_and_check(list(nodes), ops)
        by_client = {c: [o for o in ops if o.client == c] for c in ("sync", "async", "outside")}
        refused = first(by_client["async"], cut_at, REFUSED, "UNAVAILABLE/CLUSTERDOWN")
        last_async = last(by_client["async"], cut_at + PARTITION_S)
        after_cut = [o for o in by_client["async"] if o.outcome == OK and cut_at <= o.sent]
        resumed = first(by_client["outside"], cut_at)
        promoted = log_events(lc.cluster.nodes, PROMOTED)
        assert refused is not None, "the minority primary never refused a write"
        refuse_s = refused.done - cut_at
        assert resumed is not None, "writes never resumed on the majority side"
        failover_s = resumed.done - cut_at
        report_figure(
            f"minority primary (node_timeout {NODE_TIMEOUT_MS} ms): refused writes "
            f"{refuse_s * 1000:.0f} ms after the cut (bound {REFUSE_BOUND_S * 1000:.0f} ms), "
            f"acknowledged {len(after_cut)} min_replicas=0 writes after the cut "
            f"(last {((last_async.done - cut_at) * 1000 if last_async else 0):.0f} ms after); "
            f"majority wrote again {failover_s * 1000:.0f} ms after the cut; "
            f"promotions {promoted}; {report.summary()}"
        )
        assert refuse_s <= REFUSE_BOUND_S
        assert failover_s <= FAILOVER_BOUND_S
        assert promoted == 1
        assert set(owners) <= {node_id(n) for n in nodes}
        assert replica_id in owners
        assert not report.unowned_slots and not report.doubly_owned
        assert report.acknowledged[1] > 0 and report.acknowledged[0] > 0
        assert report.lost_count(1) == 0, report.lost[1][:5]
        assert not report.foreign and not report.resurrected
        # Only what the minority primary acknowledged after the cut can be gone.
        # Only what the minority primary acknowledged after the cut can be gone,
        # and what it acknowledged well after the cut never reached the replica.
        lost = set(report.lost[0])
        assert lost <= {o.key for o in after_cut}
        if any(o.sent > cut_at + 0.2 for o in after_cut):
            assert lost
    finally:
        nodes.close()
