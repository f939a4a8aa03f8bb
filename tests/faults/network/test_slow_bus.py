"""A primary behind a slow link: replies slower than a resend, faster than node_timeout.

Every peer's bus connection to node 0 goes through a delay proxy (200 ms
each way, so a round trip takes about 400 ms; node_timeout is 1000 ms).
Node 0 answers every PING within node_timeout, so it must not be marked
failing, let alone failed over, and writes to it carry on.
"""

from __future__ import annotations

import time

import pytest

from tests.support.netlab.clients import stop_all, wait_acknowledged
from tests.support.netlab.scenario import (
    NODE_TIMEOUT_S,
    WARM_ACKS,
    settle_and_check,
    start_writers,
)
from tests.support.netlab.servers import BUS_PORT, start_lab_cluster
from tests.support.nodes import Nodes
from tests.support.readback import MARKED_FAIL, PROMOTED, log_events
from tests.support.workload import NODE_TIMEOUT_MS

pytestmark = pytest.mark.slow

DELAY_S = 0.2
SLOW_FOR_S = 5 * NODE_TIMEOUT_S


def test_a_primary_answering_within_node_timeout_is_not_failed(
    lab, factory, tmp_path, report_figure
):
    lc = start_lab_cluster(lab, factory, 3, 1)
    nodes = Nodes(lc.addresses)
    try:
        slow = lc.hosts[0]
        proxies = [lab.delay(peer, slow, BUS_PORT) for peer in lc.hosts[1:]]
        client_host = lab.add_host("c0")
        clients = start_writers(lab, client_host, nodes, 0, tmp_path / "clients", 100)
        try:
            wait_acknowledged(clients, WARM_ACKS)
            for proxy in proxies:
                proxy.delay_s = DELAY_S
            time.sleep(SLOW_FOR_S)
            failing = [p.node.id for n in nodes for p in n.state().peers if "fail" in p.flags]
            suspected = log_events(lc.cluster.nodes, MARKED_FAIL)
            promotions = log_events(lc.cluster.nodes, PROMOTED)
            lab.heal()
        finally:
            ops = stop_all(clients)
        report, _ = settle_and_check(list(nodes), ops)
        report_figure(
            f"slow links to a primary ({DELAY_S * 2000:.0f} ms round trip, node_timeout "
            f"{NODE_TIMEOUT_MS} ms, {SLOW_FOR_S:.0f} s): FAIL verdicts {suspected}, "
            f"promotions {promotions}; {report.summary()}"
        )
        assert suspected == 0 and not failing, "a primary answering in time was marked FAIL"
        assert promotions == 0
        assert report.lost_count(0) == 0 and report.lost_count(1) == 0
    finally:
        nodes.close()
