"""A replica cut off from its primary (only from it) while the primary takes writes.

Nothing resets a connection whose packets are dropped, so the primary's
stream to the replica just stops moving. What it would send must not pile
up without bound: a replica that falls further behind than the backlog
holds is dropped (as Redis drops a replica whose output buffer overflows),
so the primary's memory stays flat. After heal the replica syncs again and
holds what the primary holds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.netlab.clients import start_client, stop_all, wait_acknowledged
from tests.support.netlab.scenario import keys_of, settle_and_check
from tests.support.netlab.servers import start_lab_cluster
from tests.support.nodes import Nodes
from tests.support.readback import PROMOTED, log_events
from tests.support.workload import replica_matches_primary

pytestmark = pytest.mark.slow

PRIMARY, REPLICA = 0, 3
BACKLOG_MB = 1
PADDING = 16000
CUT_S = 6.0
WARM_ACKS = 200
# The stream to the replica may hold about a backlog, plus what gRPC buffers;
# unbounded, it grows by the whole write rate (tens of MiB here).
GROWTH_MAX_MIB = 8 * BACKLOG_MB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_replica_cut_off_from_its_primary_does_not_grow_the_primary(
    lab, factory, tmp_path, report_figure
):
    lc = start_lab_cluster(lab, factory, 3, 1, "--repl-backlog-size", f"{BACKLOG_MB}mb")
    nodes = Nodes(lc.addresses)
    try:
        primary = lc.cluster.nodes[PRIMARY]
        client_host = lab.add_host("c0")
        keys = keys_of(nodes, PRIMARY, "big", 300)
        writer = start_client(
            lab, client_host, "writer", [lc.addresses[PRIMARY]], keys, tmp_path / "clients",
            "--padding", str(PADDING),
        )  # fmt: skip
        try:
            wait_acknowledged([writer], WARM_ACKS)
            before = rss_mib(primary.pid)
            lab.cut([lc.hosts[PRIMARY]], [lc.hosts[REPLICA]])
            cut_at = time.monotonic()
            acked_at_cut = writer.acknowledged()
            time.sleep(CUT_S)
            during = rss_mib(primary.pid)
            written = (writer.acknowledged() - acked_at_cut) * PADDING / 2**20
            lab.heal()
            healed_at = time.monotonic()
            time.sleep(0.5)
        finally:
            ops = stop_all([writer])
        compared, differing = replica_matches_primary(nodes[PRIMARY], nodes[REPLICA], keys, 30)
        caught_up_s = time.monotonic() - healed_at
        report, _ = settle_and_check(list(nodes), ops)
        report_figure(
            f"replica cut off from its primary for {CUT_S:.0f} s ({written:.0f} MiB written "
            f"meanwhile, backlog {BACKLOG_MB} MiB): primary RSS {before:.0f} -> {during:.0f} MiB; "
            f"replica identical again {caught_up_s:.1f} s after heal "
            f"({compared} keys compared); {report.summary()}"
        )
        assert written > 3 * GROWTH_MAX_MIB, "too little written to tell"
        assert during - before <= GROWTH_MAX_MIB
        assert differing == []
        assert log_events(lc.cluster.nodes, PROMOTED) == 0
        assert report.lost_count(0) == 0 and not report.foreign
        assert cut_at < healed_at
    finally:
        nodes.close()
