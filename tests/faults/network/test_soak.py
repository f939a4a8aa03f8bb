"""A soak: mixed traffic with TTLs and evictions on six nodes, a primary killed every minute.

Clients in their own namespaces write with ``min_replicas=1`` (some keys
also deleted, to catch resurrections), write TTL'd padded values that
overflow ``--maxmemory`` (volatile-lru evicts only them), and read from
replicas. Every minute a primary is killed with SIGKILL and started again
once its replica has taken over. The resident memory of the nodes that are
never killed may grow by at most 5% after warm-up, and no write
acknowledged with ``min_replicas=1`` may be lost.

CI runs two minutes (two kills); ``--long`` runs ten, ``SOAK_SECONDS`` any.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.history import OK
from tests.support.netlab.clients import start_client, stop_all
from tests.support.netlab.scenario import settle_and_check, wait_until
from tests.support.netlab.servers import start_lab_cluster
from tests.support.nodes import Nodes, wait_for
from tests.support.readback import PROMOTED, log_events
from tests.support.workload import NODE_TIMEOUT_MS, keys_in_slots, role, stats

pytestmark = pytest.mark.slow

CI_SECONDS = 120.0
LONG_SECONDS = 600.0
KILL_EVERY_S = 60.0
RSS_GROWTH_MAX = 0.05
FLAGS = (
    *("--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru"),
    *("--repl-backlog-size", "1mb"),
)
ALL_SLOTS = list(range(16384))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def soak_seconds(config: pytest.Config) -> float:
    if os.environ.get("SOAK_SECONDS"):
        return float(os.environ["SOAK_SECONDS"])
    return LONG_SECONDS if config.getoption("--long") else CI_SECONDS


def test_soak_with_kills(lab, factory, tmp_path, report_figure, pytestconfig):
    duration = soak_seconds(pytestconfig)
    lc = start_lab_cluster(lab, factory, 3, 1, *FLAGS)
    nodes = Nodes(lc.addresses)
    cluster = lc.cluster
    try:
        work = tmp_path / "clients"
        hosts = [lab.add_host(f"c{i}") for i in range(2)]
        everywhere = lc.addresses
        sync_keys = keys_in_slots("sync", ALL_SLOTS, 600)
        clients = [
            start_client(lab, hosts[0], "sync", everywhere, sync_keys, work,
                         "--min-replicas", "1", "--pause", "0.002"),
            start_client(lab, hosts[0], "deletes", everywhere,
                         keys_in_slots("del", ALL_SLOTS, 300), work,
                         "--min-replicas", "1", "--delete-every", "3", "--pause", "0.002"),
            start_client(lab, hosts[1], "ttl", everywhere,
                         keys_in_slots("ttl", ALL_SLOTS, 6000), work,
                         "--min-replicas", "0", "--ttl-ms", "20000", "--padding", "2000"),
            start_client(lab, hosts[1], "reader", everywhere, sync_keys, work,
                         "--mode", "read", "--replica-read", "--pause", "0.01"),
        ]  # fmt: skip
        # Primary i's replica is node i + 3; the victims alternate within pair 0
        # (node 0, then its replica that took over, ...), the other four stay.
        watched = [1, 2, 4, 5]
        kills = 0
        rss_start: dict[int, int] = {}
        try:
            start = time.monotonic()
            warm_up = min(KILL_EVERY_S / 2, duration / 4)
            wait_until(start + warm_up)
            rss_start = {i: rss_kib(cluster.nodes[i].pid) for i in watched}
            next_kill = start + KILL_EVERY_S / 2
            while next_kill < start + duration:
                wait_until(next_kill)
                victim = 0 if role(nodes[0]) == "primary" else 3
                survivor = 3 - victim
                cluster.kill(victim)
                kills += 1
                wait_for(lambda s=survivor: role(nodes[s]) == "primary", 15, "the failover")
                cluster.revive(victim)
                nodes.reopen(victim)
                next_kill += KILL_EVERY_S
            wait_until(start + duration)
            rss_end = {i: rss_kib(cluster.nodes[i].pid) for i in watched}
        finally:
            ops = stop_all(clients)
        # TTL'd keys may be evicted or expire: absent proves nothing about them.
        checked = [o for o in ops if o.client != "ttl"]
        report, _ = settle_and_check(list(nodes), checked)
        evicted = sum(stats(n)["evicted"] for n in nodes)
        growth = sum(rss_end.values()) / sum(rss_start.values()) - 1
        per_node = ", ".join(
            f"node {i} {rss_start[i] / 1024:.0f}->{rss_end[i] / 1024:.0f} MiB" for i in watched
        )
        acked = {
            c.name: sum(1 for o in ops if o.client == c.name and o.outcome == OK) for c in clients
        }
        report_figure(
            f"soak {duration:.0f} s, 6 nodes, {kills} kills (node_timeout {NODE_TIMEOUT_MS} ms): "
            f"acknowledged {acked}; evicted {evicted}; promotions "
            f"{log_events(cluster.nodes, PROMOTED)}; RSS of the never-killed nodes after warm-up "
            f"{growth:+.1%} ({per_node}); {report.summary()}"
        )
        assert kills >= 2
        assert evicted > 0
        assert report.acknowledged[1] > 0 and not report.acknowledged[0]
        assert report.lost_count(1) == 0, report.lost[1][:5]
        assert not report.resurrected and not report.foreign
        assert not report.unowned_slots and not report.doubly_owned
        assert growth <= RSS_GROWTH_MAX
    finally:
        nodes.close()
