"""SIGTERM on a primary with an in-sync replica: the replica takes over before the primary exits.

With ``--shutdown-failover no`` the primary just stops, and its replica is
promoted only by failure detection, after the primary has exited.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.nodes import Nodes, wait_for
from tests.support.workload import role, start_cluster

pytestmark = pytest.mark.slow

STOP_TIMEOUT_S = 15.0


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff", "no-handoff"])
def test_sigterm_on_a_primary_hands_its_slots_over_first(factory, report_figure, handoff: bool):
    flags = () if handoff else ("--shutdown-failover", "no")
    cluster = start_cluster(factory, 3, 1, *flags)
    nodes = Nodes(cluster.addresses)
    try:
        primary = cluster.nodes[0]
        sent = time.monotonic()
        primary.send_signal(signal.SIGTERM)
        assert primary.proc is not None
        status = primary.proc.wait(STOP_TIMEOUT_S)
        exited = time.monotonic()
        if handoff:
            # The replica was primary before the old primary's process was gone.
            assert role(nodes[3]) == "primary"
            promoted = exited
        else:
            assert role(nodes[3]) == "replica"
            wait_for(lambda: role(nodes[3]) == "primary", 15, "failure detection to promote")
            promoted = time.monotonic()
        assert status == 0
        report_figure(
            f"SIGTERM on a primary ({'with' if handoff else 'without'} the handoff): exited "
            f"after {(exited - sent) * 1000:.0f} ms, its replica primary "
            + (
                "before that"
                if handoff
                else f"{(promoted - exited) * 1000:.0f} ms later (failure detection)"
            )
        )
    finally:
        nodes.close()
