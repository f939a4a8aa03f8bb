"""A slow link from a primary to its replica: latency (a delay proxy) or bandwidth (tc tbf).

Writes that ask for ``min_replicas=1`` must fail with the documented
``REPLICATION_TIMEOUT`` (DEADLINE_EXCEEDED) once the replica cannot
acknowledge within ``--min-replicas-timeout``, and stay applied on the
primary. The replica's lag must be visible (the offsets drift apart, and
reads from the replica are stale, counted by the history checker). Nothing
is failed over, so after heal nothing acknowledged is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.support.history import OK, UNKNOWN, Op
from tests.support.netlab.clients import start_client, stop_all, wait_acknowledged
from tests.support.netlab.lab import NetLab
from tests.support.netlab.scenario import WARM_ACKS, keys_of, settle_and_check
from tests.support.netlab.servers import BUS_PORT, LabCluster, start_lab_cluster
from tests.support.nodes import Nodes, wait_for
from tests.support.readback import PROMOTED, log_events
from tests.support.workload import (
    NODE_TIMEOUT_MS,
    REPLICATION_TIMEOUT,
    read_values,
    replica_matches_primary,
    stats,
)

pytestmark = pytest.mark.slow

REPLICA_TIMEOUT_MS = 300
# Each way, so a write's round trip to the replica takes twice as long as the
# replica timeout, but a gossip round trip stays well under node_timeout.
DELAY_S = 0.3
RATE = "64kbit"
PADDING = 2000
FAULT_S = 5.0
KEYS = 100
PRIMARY, REPLICA = 0, 3


def slow_by_latency(lab: NetLab, lc: LabCluster, nodes: Nodes) -> None:
    proxy = lab.delay(lc.hosts[REPLICA], lc.hosts[PRIMARY], BUS_PORT)
    # The replica's stream was reset: slow it down once it is back in sync.
    wait_for(
        lambda: proxy.bytes_forwarded and stats(nodes[PRIMARY])["repl.replicas_in_sync"] == 1,
        15,
        "the replica to stream through the proxy",
    )
    proxy.delay_s = DELAY_S


def slow_by_bandwidth(lab: NetLab, lc: LabCluster, nodes: Nodes) -> None:
    lab.limit_rate(lc.hosts[PRIMARY], RATE, to=lc.hosts[REPLICA])


@pytest.mark.parametrize(
    "slow_down",
    [pytest.param(slow_by_latency, id="latency"), pytest.param(slow_by_bandwidth, id="bandwidth")],
)
def test_a_slow_replica_link_times_sync_writes_out_and_they_stay_applied(
    lab, factory, tmp_path, report_figure, slow_down: Callable[[NetLab, LabCluster, Nodes], None]
):
    lc = start_lab_cluster(lab, factory, 3, 1, "--min-replicas-timeout", str(REPLICA_TIMEOUT_MS))
    nodes = Nodes(lc.addresses)
    try:
        client_host = lab.add_host("c0")
        work = tmp_path / "clients"
        primary, replica = [lc.addresses[PRIMARY]], [lc.addresses[REPLICA]]
        async_keys = keys_of(nodes, PRIMARY, "async", KEYS)
        clients = [
            start_client(lab, client_host, "sync", primary, keys_of(nodes, PRIMARY, "sync", KEYS),
                         work, "--min-replicas", "1"),
            start_client(lab, client_host, "async", primary, async_keys, work,
                         "--min-replicas", "0", "--padding", str(PADDING), "--pause", "0.002"),
            start_client(lab, client_host, "reader", replica, async_keys, work,
                         "--mode", "read", "--replica-read", "--pause", "0.005"),
        ]  # fmt: skip
        max_lag_ops = max_lag_ms = 0
        try:
            wait_acknowledged(clients, WARM_ACKS)
            slow_down(lab, lc, nodes)
            slowed_at = time.monotonic()
            while time.monotonic() - slowed_at < FAULT_S:
                p, r = stats(nodes[PRIMARY]), stats(nodes[REPLICA])
                max_lag_ops = max(max_lag_ops, p["repl.offset"] - r["repl.offset"])
                max_lag_ms = max(max_lag_ms, r.get("repl.lag_ms", 0))
                time.sleep(0.1)
        finally:
            ops = stop_all(clients)
        # Before heal: every write that timed out is on the primary.
        sync_ops = [o for o in ops if o.client == "sync"]
        last_per_key: dict[bytes, Op] = {}
        for op in sync_ops:
            last_per_key[op.key] = op
        timed_out = {
            k: o for k, o in last_per_key.items()
            if o.outcome == UNKNOWN and o.error.endswith(REPLICATION_TIMEOUT)
        }  # fmt: skip
        on_primary = read_values(nodes[PRIMARY], list(timed_out))
        lab.heal()
        healed_at = time.monotonic()
        _, differing = replica_matches_primary(nodes[PRIMARY], nodes[REPLICA], async_keys, 30)
        caught_up_s = time.monotonic() - healed_at
        report, _ = settle_and_check(list(nodes), ops)
        during = [o for o in sync_ops if o.sent >= slowed_at]
        errors = sorted({o.error for o in during if o.outcome != OK})
        promotions = log_events(lc.cluster.nodes, PROMOTED)
        report_figure(
            f"slow replica link ({slow_down.__name__}, min-replicas-timeout "
            f"{REPLICA_TIMEOUT_MS} ms, node_timeout {NODE_TIMEOUT_MS} ms): min_replicas=1 writes "
            f"during the fault: {sum(o.outcome == OK for o in during)} acknowledged, "
            f"{sum(o.error.endswith(REPLICATION_TIMEOUT) for o in during)} REPLICATION_TIMEOUT "
            f"(errors {errors}), {len(timed_out)} keys ended on a timed-out write, all on the "
            f"primary: {all(on_primary[k] == o.value for k, o in timed_out.items())}; replica lag "
            f"up to {max_lag_ops} ops / {max_lag_ms} ms, caught up {caught_up_s:.1f} s after heal; "
            f"promotions {promotions}; "
            f"{report.summary()}"
        )
        assert timed_out, "no min_replicas=1 write timed out on the slow link"
        assert errors == [f"DEADLINE_EXCEEDED/{REPLICATION_TIMEOUT}"]
        assert {k: on_primary[k] for k in timed_out} == {k: o.value for k, o in timed_out.items()}
        assert max_lag_ops > 0
        assert differing == [], "the replica did not catch up after heal"
        assert report.stale_reads, "reads from a lagging replica were never stale"
        assert promotions == 0
        assert not report.unowned_slots and not report.doubly_owned
        assert report.lost_count(1) == 0 and report.lost_count(0) == 0
        assert not report.foreign and not report.resurrected
    finally:
        nodes.close()
