"""A one-way partition: a primary can still call every peer, but no peer can call it.

Over TCP, dropping one direction's packets breaks connections both ways, so
"B cannot send to A" is modelled by connection: the lab drops every
connection the peers open to node 0, while node 0's own calls (and their
replies) go through. Node 0 keeps hearing PONGs, so it sees a healthy
cluster; its peers hear nothing from it, fail it over, and node 0 learns of
that from the replies to its own PINGs and follows the new primary. What
node 0 acknowledged with ``min_replicas=0`` meanwhile is counted; nothing
acknowledged with ``min_replicas=1`` may be lost (node 0's replica cannot
open its stream to it, so such writes are refused).
"""

from __future__ import annotations

import time

import pytest

from tests.support.history import OK
from tests.support.netlab.clients import stop_all, wait_acknowledged
from tests.support.netlab.scenario import (
    FAILOVER_BOUND_S,
    NODE_TIMEOUT_S,
    WARM_ACKS,
    first,
    settle_and_check,
    start_writers,
    wait_until,
)
from tests.support.netlab.servers import start_lab_cluster
from tests.support.nodes import Nodes, wait_for
from tests.support.readback import PROMOTED, log_events
from tests.support.workload import NODE_TIMEOUT_MS, node_id, role

pytestmark = pytest.mark.slow

# Node 0 hears of its replacement in the PONG to its next PING (every peer
# is pinged within node_timeout/2), plus a tick.
DEMOTION_BOUND_S = FAILOVER_BOUND_S + NODE_TIMEOUT_S / 2 + 0.5
PARTITION_S = 4 * NODE_TIMEOUT_S
KEYS = 150
# Enough keys that the min_replicas=0 writer does not come back to a key
# within the test: a later write would hide the loss of an earlier one.
ONCE_KEYS = 8000
# How long before the cut a write may have been acknowledged and still not
# have left node 0's stream to its replica.
ASYNC_WINDOW_S = 0.5


def test_a_primary_nobody_can_reach_is_failed_over_and_follows(
    lab, factory, tmp_path, report_figure
):
    lc = start_lab_cluster(lab, factory, 3, 1)
    nodes = Nodes(lc.addresses)
    try:
        isolated, replica = 0, 3
        client_host = lab.add_host("c0")
        clients = start_writers(
            lab, client_host, nodes, isolated, tmp_path / "clients", KEYS, ONCE_KEYS
        )
        try:
            wait_acknowledged(clients, WARM_ACKS)
            peers = [h for i, h in enumerate(lc.hosts) if i != isolated]
            lab.block_calls(peers, [lc.hosts[isolated]])
            cut_at = time.monotonic()
            wait_for(lambda: role(nodes[replica]) == "primary", FAILOVER_BOUND_S + 5, "failover")
            promoted_at = time.monotonic()
            wait_for(lambda: role(nodes[isolated]) == "replica", DEMOTION_BOUND_S + 5, "demotion")
            demoted_at = time.monotonic()
            wait_until(cut_at + PARTITION_S)
        finally:
            ops = stop_all(clients)
        lab.heal()
        report, owners = settle_and_check(list(nodes), ops)
        promoted = log_events(lc.cluster.nodes, PROMOTED)
        async_ops = [o for o in ops if o.client == "async"]
        acked_after_cut = [o for o in async_ops if o.outcome == OK and o.sent >= cut_at]
        sync_after = first([o for o in ops if o.client == "sync"], cut_at)
        lost_at = sorted(o.done - cut_at for o in acked_after_cut if o.key in set(report.lost[0]))
        window = f" (acknowledged {lost_at[0]:.2f}..{lost_at[-1]:.2f} s after)" if lost_at else ""
        report_figure(
            f"one-way partition (peers cannot call node 0, node_timeout {NODE_TIMEOUT_MS} ms): "
            f"replica promoted {(promoted_at - cut_at) * 1000:.0f} ms after the cut, old primary "
            f"a replica {(demoted_at - cut_at) * 1000:.0f} ms after; {len(acked_after_cut)} "
            f"min_replicas=0 writes acknowledged through node 0 after the cut, "
            f"{len(lost_at)} lost{window}; first "
            f"min_replicas=1 write acknowledged after the cut: "
            + (f"{(sync_after.done - cut_at) * 1000:.0f} ms" if sync_after else "none")
            + f"; promotions {promoted}; {report.summary()}"
        )
        assert promoted_at - cut_at <= FAILOVER_BOUND_S
        assert demoted_at - cut_at <= DEMOTION_BOUND_S
        assert promoted == 1
        assert node_id(nodes[replica]) in owners
        assert not report.unowned_slots and not report.doubly_owned
        assert report.acknowledged[1] > 0
        assert report.lost_count(1) == 0, report.lost[1][:5]
        assert not report.foreign and not report.resurrected
        # What node 0 acknowledged while its replica was being promoted is lost,
        # and what it acknowledged just before the cut but had not streamed yet
        # (the asynchronous window); nothing older, nothing sent once it followed.
        lost = set(report.lost[0])
        window = [o for o in async_ops if o.outcome == OK and o.done >= cut_at - ASYNC_WINDOW_S]
        assert lost <= {o.key for o in window if o.sent <= demoted_at}
    finally:
        nodes.close()
