"""``clusterctl up --foreground`` stops on SIGINT even when its parent ignores SIGINT.

A script that starts ``make run &`` (or a CI step that backgrounds it)
hands its children SIGINT as ignored; Python keeps it ignored unless told
otherwise, and the cluster would then outlive every Ctrl-C.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from slotcache.ctl import local
from tests.support.ctl import foreground_up, free_port_block


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_foreground_stops_on_sigint_when_the_parent_ignores_it(cluster_dir: Path) -> None:
    base = free_port_block(2)
    fast = ("--primaries", "1", "--node-timeout-ms", "1000", "--stop-timeout", "5")
    with foreground_up(cluster_dir, base, *fast, preexec_fn=ignore_sigint) as (proc, data):
        pids = [n["pid"] for n in data["nodes"]]
        assert all(local.alive(pid) for pid in pids)
        time.sleep(0.5)  # past printing, into watching the nodes
        assert proc.poll() is None, "foreground mode must stay attached"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Ctrl-C: stopping the cluster" in err and "stopped 2 nodes" in err
    assert not any(local.alive(pid) for pid in pids)
    assert not local.discover(cluster_dir).running
