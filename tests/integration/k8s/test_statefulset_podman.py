"""The dev overlay's StatefulSet run under podman: it forms, heals, grows and shrinks by itself.

No Kubernetes cluster can run here, so the rendered pod spec is run the
way the kubelet would run it (see tests/support/podman.py): one image built
from this tree on a base made from Debian packages, six pods started at
once, and nothing but the bootstrap sidecars to form the cluster. Traffic
stays on the network the test creates.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import documents, kustomize_command, render
from tests.support.podman import PodmanStatefulSet, build_images, missing_tools

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PODS = 6
KEYS = 2000
# The dev overlay's memory limit (256Mi), which the kubelet would pass to the server.
MEMORY_LIMIT = 256 << 20
WAIT_S = 120.0


@pytest.fixture
def statefulset(
    tmp_path: Path, report_figure: Callable[[str], None]
) -> Iterator[PodmanStatefulSet]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs them)")
    if kustomize_command() is None:
        pytest.skip("neither kubectl nor kustomize is installed")
    if os.geteuid() != 0:
        pytest.skip("podman runs as root on these machines")
    seconds = build_images(tmp_path)
    report_figure(f"k8s e2e: base and slotcache images built in {seconds:.1f} s")
    pods = PodmanStatefulSet(documents(render("dev")), MEMORY_LIMIT)
    try:
        yield pods
    finally:
        pods.close()


def wait_until(what: str, probe: Callable[[], bool], timeout: float = WAIT_S) -> float:
    """Poll ``probe`` every half second; return the seconds it took."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def nodes(pods: PodmanStatefulSet) -> list[dict[str, Any]]:
    """Every node as pod 0's node sees it."""
    return list(pods.ctl_json("nodes", pods.address(0))["nodes"])


def node_at(pods: PodmanStatefulSet, ordinal: int) -> dict[str, Any]:
    (node,) = [n for n in nodes(pods) if n["address"] == pods.address(ordinal)]
    return node


def healthy(pods: PodmanStatefulSet, count: int) -> Callable[[], bool]:
    """``clusterctl check`` passes and the cluster has exactly ``count`` nodes."""

    def probe() -> bool:
        done = pods.ctl("check", pods.address(0))
        return done.returncode == 0 and f"{count} nodes agree" in " ".join(done.stdout.split())

    return probe


def rerun_if_unreachable(pods: PodmanStatefulSet, *args: str) -> None:
    """An operator's clusterctl step, run again if a name failed to resolve for a moment.

    Both steps used here are safe to repeat: rebalance plans from the current
    view, and del-node treats an already forgotten node as done.
    """
    for _ in range(3):
        # A longer per-call timeout than the default 5 s: the machine running the
        # test may be busy, and podman's DNS server with it.
        done = pods.ctl(*args, "--timeout=15", timeout=300)
        if done.returncode == 0:
            return
        assert "cannot reach" in done.stderr, done.stderr
        time.sleep(1)
    raise AssertionError(done.stderr)


def ordinal_of(pods: PodmanStatefulSet, address: str) -> int:
    return next(i for i in range(16) if pods.address(i) == address)


def test_statefulset_forms_heals_and_scales_by_itself(
    statefulset: PodmanStatefulSet, report_figure: Callable[[str], None]
) -> None:
    try:
        scenario(statefulset, report_figure)
    except BaseException:
        # The containers are removed at teardown; their logs go into the report first.
        print(statefulset.logs())
        raise


def scenario(pods: PodmanStatefulSet, report_figure: Callable[[str], None]) -> None:
    seed = pods.address(0)

    # Six pods at once; the sidecars form the cluster with no other step.
    started = time.monotonic()
    pods.start_all(range(PODS))
    wait_until("the cluster formed", healthy(pods, PODS))
    formed_s = time.monotonic() - started
    report_figure(f"k8s e2e: 6 pods started -> clusterctl check passes in {formed_s:.1f} s")
    view = nodes(pods)
    assert sum(n["role"] == "primary" for n in view) == 3
    assert all(n["address"].endswith(".slotcache-headless.slotcache-dev.svc:7000") for n in view)
    assert pods.client_run("write", seed, str(KEYS)) == {"acknowledged": KEYS}

    # A primary's pod deleted (SIGTERM: it hands over) and recreated on a new IP
    # with its volume, while a client keeps writing and reading.
    primary = next(n for n in view if n["role"] == "primary" and n["address"] != seed)
    ordinal = ordinal_of(pods, primary["address"])
    old_ip = pods.ip(ordinal)
    workload = subprocess.Popen(
        pods.client_command("pause", seed, "25"), stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(3)
        pods.stop(ordinal, graceful=True)
        pods.start(ordinal)
        assert pods.ip(ordinal) != old_ip
        wait_until("the restarted primary's pod rejoined", healthy(pods, PODS))
        out, _ = workload.communicate(timeout=60)
    finally:
        workload.kill()
    assert node_at(pods, ordinal)["id"] == primary["id"]
    pause = json.loads(out)
    report_figure(
        f"k8s e2e: longest client pause while a primary's pod restarts: "
        f"{pause['longest_pause_s'] * 1000:.0f} ms ({pause['calls']} calls, "
        f"{pause['failures']} failed and retried)"
    )
    assert pause["calls"] > 0

    # A replica's pod killed (SIGKILL) and recreated on a new IP keeps its identity too.
    replica = next(n for n in nodes(pods) if n["role"] == "replica")
    ordinal = ordinal_of(pods, replica["address"])
    pods.stop(ordinal, graceful=False)
    pods.start(ordinal)
    wait_until("the killed replica's pod rejoined", healthy(pods, PODS))
    assert node_at(pods, ordinal)["id"] == replica["id"]
    assert pods.client_run("read", seed, str(KEYS)) == {"found": KEYS}

    # Scale out to 8: a new primary and its replica join, then slots move to it.
    started = time.monotonic()
    pods.start_all([6, 7])

    def grown() -> bool:
        if not healthy(pods, 8)():
            return False
        return any(node_at(pods, o)["slot_count"] > 0 for o in (6, 7))

    # add-node waits until every node knows the new one (and the replica is in
    # sync): on a busy 2-core machine that alone has taken over a minute.
    wait_until("scale out to 8", grown, timeout=2 * WAIT_S)
    report_figure(
        f"k8s e2e: scale out 6 -> 8 joined and rebalanced in {time.monotonic() - started:.1f} s"
    )
    # Whichever answered first became the primary; the other replicates it.
    new = sorted((node_at(pods, o) for o in (6, 7)), key=lambda n: n["role"])
    assert [n["role"] for n in new] == ["primary", "replica"]
    assert new[1]["primary_id"] == new[0]["id"]
    assert pods.client_run("read", seed, str(KEYS)) == {"found": KEYS}

    # Scale in to 6: drain the highest ordinals' slots, delete their pods (and
    # claims), then have the cluster forget them. No slot and no key is lost.
    gone = [node_at(pods, 7), node_at(pods, 6)]
    weights = [f"--weight={n['id']}=0" for n in gone if n["role"] == "primary"]
    rerun_if_unreachable(pods, "rebalance", seed, *weights, "--yes")
    assert all(node_at(pods, o)["slot_count"] == 0 for o in (6, 7))
    for ordinal in (7, 6):
        pods.stop(ordinal, graceful=True)
        pods.delete_volume(ordinal)
    for node in gone:
        rerun_if_unreachable(pods, "del-node", seed, node["id"])
    wait_until("scale in to 6", healthy(pods, PODS))
    covered = sum(n["slot_count"] for n in nodes(pods) if n["role"] == "primary")
    assert covered == 16384
    assert pods.client_run("read", seed, str(KEYS)) == {"found": KEYS}

    # A full restart: every pod deleted at once and recreated on a new IP. The nodes
    # find each other by name, under their old ids, with the keys from their snapshots.
    ids = {n["address"]: n["id"] for n in nodes(pods)}
    pods.stop_all(range(PODS))
    started = time.monotonic()
    pods.start_all(range(PODS))
    wait_until("the cluster recovered from a full restart", healthy(pods, PODS))
    report_figure(
        f"k8s e2e: full restart, every pod on a new IP -> check passes in "
        f"{time.monotonic() - started:.1f} s"
    )
    assert {n["address"]: n["id"] for n in nodes(pods)} == ids
    assert pods.client_run("read", seed, str(KEYS)) == {"found": KEYS}
