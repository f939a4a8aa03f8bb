"""A flapping link: node 0 and its client are cut off and healed every 0.5 x node_timeout.

Each cut is shorter than node_timeout, so no ping goes unanswered that long
and nothing should be failed over; over 10 x node_timeout of flapping the
test counts epochs, FAIL verdicts and promotions, and checks that no write
acknowledged with ``min_replicas=1`` is lost.
"""

from __future__ import annotations

import time

import pytest

from tests.support.history import OK
from tests.support.netlab.clients import stop_all, wait_acknowledged
from tests.support.netlab.scenario import (
    NODE_TIMEOUT_S,
    WARM_ACKS,
    settle_and_check,
    start_writers,
    wait_until,
)
from tests.support.netlab.servers import start_lab_cluster
from tests.support.nodes import Nodes
from tests.support.readback import MARKED_FAIL, PROMOTED, log_events
from tests.support.workload import NODE_TIMEOUT_MS

pytestmark = pytest.mark.slow

HALF_PERIOD_S = 0.5 * NODE_TIMEOUT_S
FLAP_FOR_S = 10 * NODE_TIMEOUT_S
# A storm would be a failover per cut or more; one failover (and its epoch)
# may still happen when a cut and a slow tick line up on a loaded machine.
MAX_PROMOTIONS = 1
KEYS = 150


def current_epoch(nodes: Nodes) -> int:
    return max(n.state().current_epoch for n in nodes)


def test_a_flapping_link_causes_no_failover_storm(lab, factory, tmp_path, report_figure):
    lc = start_lab_cluster(lab, factory, 3, 1)
    nodes = Nodes(lc.addresses)
    try:
        flapping = 0
        client_host = lab.add_host("c0")
        work = tmp_path / "clients"
        clients = start_writers(lab, client_host, nodes, flapping, work, KEYS)
        side = [lc.hosts[flapping], client_host]
        rest = [h for h in lc.hosts if h not in side]
        epoch_before = current_epoch(nodes)
        cuts = 0
        try:
            wait_acknowledged(clients, WARM_ACKS)
            start = time.monotonic()
            while (at := start + cuts * 2 * HALF_PERIOD_S) < start + FLAP_FOR_S:
                wait_until(at)
                lab.cut(side, rest)
                cuts += 1
                wait_until(at + HALF_PERIOD_S)
                lab.heal()
            flapped_s = time.monotonic() - start
            time.sleep(1.0)
        finally:
            ops = stop_all(clients)
        report, _ = settle_and_check(list(nodes), ops)
        epochs = current_epoch(nodes) - epoch_before
        promotions = log_events(lc.cluster.nodes, PROMOTED)
        fails = log_events(lc.cluster.nodes, MARKED_FAIL)
        acked = {
            c: sum(1 for o in ops if o.client == c and o.outcome == OK) for c in ("sync", "async")
        }
        report_figure(
            f"flapping link (cut/heal every {HALF_PERIOD_S * 1000:.0f} ms for {flapped_s:.1f} s, "
            f"{cuts} cuts, node_timeout {NODE_TIMEOUT_MS} ms): epochs +{epochs}, promotions "
            f"{promotions}, FAIL verdicts {fails}; acknowledged writes min_replicas=1 "
            f"{acked['sync']}, min_replicas=0 {acked['async']}; {report.summary()}"
        )
        assert promotions <= MAX_PROMOTIONS
        assert epochs <= MAX_PROMOTIONS
        assert not report.unowned_slots and not report.doubly_owned
        assert report.acknowledged[1] > 0
        assert report.lost_count(1) == 0, report.lost[1][:5]
        assert not report.foreign and not report.resurrected
    finally:
        nodes.close()
