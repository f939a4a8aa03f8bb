"""The dev overlay's StatefulSet run under podman: it forms, heals, grows and shrinks by itself.

No Kubernetes cluster can run here, so the rendered pod spec is run the
way the kubelet would run it (see tests/support/podman.py): one image built
from this tree on a base made from Debian packages, six pods started at
once, and nothing but the bootstrap sidecars to form the cluster. Traffic
stays on the network the test creates, but for the proxy pod's client port,
published on 127.0.0.1 for a client on the host.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from slotcache.v1 import cache_pb2, cache_pb2_grpc
from tests.support.k8s import documents, render
from tests.support.podman import (
    WAIT_S,
    PodmanStatefulSet,
    build_images,
    cannot_run,
    healthy,
    nodes,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PODS = 6
KEYS = 2000
PROXY_KEYS = 500
NODE_TIMEOUT_MS = 2000
# The dev overlay's memory limit (256Mi), which the kubelet would pass to the server.
MEMORY_LIMIT = 256 << 20


@pytest.fixture
def statefulset(report_figure: Callable[[str], None]) -> Iterator[PodmanStatefulSet]:
    reason = cannot_run()
    if reason:
        pytest.skip(reason)
    seconds = build_images()
    report_figure(f"k8s e2e: image (re)built in {seconds:.1f} s")
    pods = PodmanStatefulSet(quicker(documents(render("dev"))), MEMORY_LIMIT)
    try:
        yield pods
    finally:
        pods.close()


def quicker(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rendered manifests with a shorter node timeout, the one change the test makes.

    Failure detection and gossip pace every step here (a restarted pod's
    peers marking it and clearing it, a new node becoming known to all);
    2 s instead of 5 s keeps the test's minutes down on a busy machine.
    """
    for doc in docs:
        if doc["kind"] == "ConfigMap" and "SLOTCACHE_NODE_TIMEOUT" in doc.get("data", {}):
            doc["data"]["SLOTCACHE_NODE_TIMEOUT"] = str(NODE_TIMEOUT_MS)
    return docs


def through_proxy(port: int, keys: int) -> dict[str, int]:
    """A plain generated stub on the host, no redirects: writes, then reads, through the proxy.

    It also reads the keys the SDK wrote earlier, which live on the primaries.
    """
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = cache_pb2_grpc.CacheStub(channel)

        def get(key: str) -> bytes | None:
            reply = stub.Get(cache_pb2.GetRequest(key=key.encode()), timeout=10)
            return reply.value if reply.found else None

        written = sum(
            stub.Set(cache_pb2.SetRequest(key=f"x{i}".encode(), value=value(i)), timeout=10).applied
            for i in range(keys)
        )
        read = sum(get(f"x{i}") == value(i) for i in range(keys))
        earlier = sum(get(f"k{i}") == value(i) for i in range(KEYS))
    return {"written": written, "read": read, "earlier": earlier}


def value(i: int) -> bytes:
    """The value container_client.py writes for key number ``i``."""
    return f"value-{i}".encode()


def proxy_answers(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return through_proxy(port, 1)["written"] == 1
        except grpc.RpcError:
            return False

    return probe


def node_at(pods: PodmanStatefulSet, ordinal: int) -> dict[str, Any]:
    (node,) = [n for n in nodes(pods) if n["address"] == pods.address(ordinal)]
    return node


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

    # The proxy tier: a proxy pod joins by itself, owns no slot, and a client on the
    # host that cannot follow redirects reads and writes every key through it. Stopped,
    # it leaves the cluster.
    started = time.monotonic()
    port = pods.start_proxy(0)
    wait_until("the proxy joined", lambda: any(n["role"] == "proxy" for n in nodes(pods)))
    wait_until("the proxy forwards", proxy_answers(port))
    report_figure(f"k8s e2e: proxy pod started -> serving in {time.monotonic() - started:.1f} s")
    (proxy,) = [n for n in nodes(pods) if n["role"] == "proxy"]
    assert proxy["slot_count"] == 0
    expected = {"written": PROXY_KEYS, "read": PROXY_KEYS, "earlier": KEYS}
    assert through_proxy(port, PROXY_KEYS) == expected
    pods.stop_pod("slotcache-proxy-0")
    wait_until("the stopped proxy left", healthy(pods, PODS))
    assert not [n for n in nodes(pods) if n["role"] == "proxy"]

    # A primary's pod deleted (SIGTERM: it hands over) and recreated on a new IP
    # with its volume, while a client keeps writing and reading.
    primary = next(n for n in view if n["role"] == "primary" and n["address"] != seed)
    ordinal = ordinal_of(pods, primary["address"])
    old_ip = pods.ip(ordinal)
    workload = subprocess.Popen(
        pods.client_command("pause", seed, "18"), stdout=subprocess.PIPE, text=True
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

    # A full restart: every pod deleted at once and recreated on a new IP, the replicas'
    # containers killed (SIGKILL), the primaries stopped (SIGTERM: they save their
    # snapshots). The nodes find each other by name, under their old ids, the
    # primaries with their keys, the replicas syncing from them.
    view = nodes(pods)
    ids = {n["address"]: n["id"] for n in view}
    by_role = {
        role: [ordinal_of(pods, n["address"]) for n in view if n["role"] == role]
        for role in ("primary", "replica")
    }
    pods.stop_all(by_role["replica"], graceful=False)
    pods.stop_all(by_role["primary"])
    started = time.monotonic()
    pods.start_all(range(PODS))
    wait_until("the cluster recovered from a full restart", healthy(pods, PODS))
    report_figure(
        f"k8s e2e: full restart (replicas killed), every pod on a new IP -> check passes in "
        f"{time.monotonic() - started:.1f} s"
    )
    assert {n["address"]: n["id"] for n in nodes(pods)} == ids
    assert pods.client_run("read", seed, str(KEYS)) == {"found": KEYS}
