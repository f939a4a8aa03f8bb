"""Cluster-aware Redis clients against a 3+3 slotcache cluster: redirects, failover, migration.

One cluster serves the module's tests in order; the last two reshape it
(a live migration, then a failover) while a writer runs, and check that
every acknowledged write is still there.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
import redis.cluster

from slotcache.ctl.launcher import LOOPBACK
from tests.support.ctl import run_cli
from tests.support.nodes import key_in_slot
from tests.support.processes import ServerFactory
from tests.support.resp import (
    RespCluster,
    redis_cli,
    redis_tool,
    start_resp_cluster,
    wait_slots_known,
)

# The slot ranges clusterctl create gives three primaries.
THIRDS = ((0, 5461), (5462, 10922), (10923, 16383))


@pytest.fixture(scope="module")
def resp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespCluster]:
    factory = ServerFactory(tmp_path_factory.mktemp("resp-cluster"))
    try:
        yield start_resp_cluster(factory, primaries=3, replicas=1)
    finally:
        factory.close()


def _cluster_client(resp: RespCluster) -> redis.cluster.RedisCluster:
    return redis.cluster.RedisCluster(
        startup_nodes=resp.startup_nodes(), socket_timeout=5, cluster_error_retry_attempts=10
    )


def test_redis_cluster_reads_and_writes_every_primary(resp_cluster: RespCluster) -> None:
    rc = _cluster_client(resp_cluster)
    try:
        for i in range(300):
            rc.set(f"rc:{i}", str(i))
        assert [rc.get(f"rc:{i}") for i in range(300)] == [str(i).encode() for i in range(300)]
        assert rc.incr("rc:counter") == 1
        keys = [f"rc:{i}" for i in range(50)]
        assert rc.mget_nonatomic(keys) == [str(i).encode() for i in range(50)]
        primaries = {n.port for n in rc.get_primaries()}
    finally:
        rc.close()
    assert primaries == set(resp_cluster.ports[:3])


def test_a_key_served_elsewhere_is_moved_to_the_owners_resp_port(
    resp_cluster: RespCluster,
) -> None:
    key = key_in_slot(b"moved", THIRDS[1][0] + 7)
    with resp_cluster.client(0) as r, pytest.raises(redis.exceptions.MovedError) as raised:
        r.get(key)
    assert str(raised.value) == f"{THIRDS[1][0] + 7} {LOOPBACK}:{resp_cluster.ports[1]}"


def test_a_plain_client_gets_multi_key_commands_across_slots_fanned_out(
    resp_cluster: RespCluster,
) -> None:
    keys = [key_in_slot(b"fan", start + 1) for start, _ in THIRDS]
    with resp_cluster.client(0) as r:
        assert r.mset({k: k for k in keys})
        assert r.mget([*keys, b"fan:missing"]) == [*keys, None]
        assert r.exists(*keys) == 3
        assert r.delete(*keys) == 3


def test_redis_cli_follows_moved(resp_cluster: RespCluster) -> None:
    key = key_in_slot(b"cli", THIRDS[2][0] + 3).decode()
    port = resp_cluster.ports[0]
    assert redis_cli(port, "SET", key, "from-cli", cluster=True) == "OK"
    assert redis_cli(port, "GET", key, cluster=True) == "from-cli"
    assert redis_cli(port, "GET", key).startswith("MOVED")


def test_asyncio_redis_cluster(resp_cluster: RespCluster) -> None:
    async def run() -> list[bytes | None]:
        nodes = [redis.asyncio.cluster.ClusterNode(LOOPBACK, p) for p in resp_cluster.ports]
        rc = redis.asyncio.RedisCluster(startup_nodes=nodes)
        try:
            # Loaded once up front: 200 first calls at once would each start redis-py's
            # initialisation, which closes connections other calls are writing to
            # (AttributeError on a writer of None).
            await rc.initialize()
            await asyncio.gather(*(rc.set(f"arc:{i}", str(i)) for i in range(200)))
            return list(await asyncio.gather(*(rc.get(f"arc:{i}") for i in range(200))))
        finally:
            await rc.aclose()

    assert asyncio.run(run()) == [str(i).encode() for i in range(200)]


def test_readonly_lets_a_replica_serve_its_primarys_keys(resp_cluster: RespCluster) -> None:
    key = key_in_slot(b"ro", 11)  # slot 11: primary 0, whose replica is node 3
    with resp_cluster.client(0) as primary:
        primary.set(key, "replicated")
    with resp_cluster.client(3) as replica:
        with pytest.raises(redis.ResponseError, match=f"^11 .*:{resp_cluster.ports[0]}$"):
            replica.get(key)
        assert replica.execute_command("READONLY")
        deadline = time.monotonic() + 5
        while replica.get(key) != b"replicated":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(redis.exceptions.MovedError):
            replica.set(key, "writes still go to the primary")


def test_cluster_nodes_and_info_describe_the_cluster(resp_cluster: RespCluster) -> None:
    with resp_cluster.client(1) as r:
        info = r.execute_command("CLUSTER INFO")
        nodes = r.execute_command("CLUSTER NODES")
        shards = r.execute_command("CLUSTER SHARDS")
        myid = r.execute_command("CLUSTER MYID")
    # redis-py parses both into dicts, as it does redis-server's.
    assert info["cluster_state"] == "ok" and info["cluster_known_nodes"] == "6"
    assert sorted(int(address.rsplit(":", 1)[1]) for address in nodes) == sorted(resp_cluster.ports)
    assert sum(1 for n in nodes.values() if "master" in n["flags"]) == 3
    assert len(shards) == 3
    assert myid


def test_redis_benchmark_cluster_mode(resp_cluster: RespCluster) -> None:
    bench = redis_tool("redis-benchmark")
    done = subprocess.run(
        [
            *(bench, "--cluster", "-h", LOOPBACK, "-p", str(resp_cluster.ports[0])),
            *("-n", "3000", "-c", "10", "-t", "set,get", "-q"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout.replace("\r", "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SET:" in out and "GET:" in out and "requests per second" in out


class Writer:
    """Writes key i = i through RedisCluster until stopped; remembers what was acknowledged.

    ``asyncio`` uses redis.asyncio's RedisCluster on a loop of its own thread.
    """

    def __init__(self, resp: RespCluster, prefix: str, asyncio: bool = False) -> None:
        self.resp = resp
        self.prefix = prefix
        self.acked: list[int] = []
        self.errors = 0
        self._stop = threading.Event()
        target = self._run_async if asyncio else self._run
        self._thread = threading.Thread(target=target, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        rc = _cluster_client(self.resp)
        try:
            i = 0
            while not self._stop.is_set():
                try:
                    rc.set(f"{self.prefix}:{i}", str(i))
                    self.acked.append(i)
                except redis.RedisError:
                    self.errors += 1
                    time.sleep(0.01)
                i += 1
        finally:
            rc.close()

    def _run_async(self) -> None:
        async def run() -> None:
            nodes = [redis.asyncio.cluster.ClusterNode(LOOPBACK, p) for p in self.resp.ports]
            rc = redis.asyncio.RedisCluster(startup_nodes=nodes, cluster_error_retry_attempts=10)
            try:
                i = 0
                while not self._stop.is_set():
                    try:
                        await rc.set(f"{self.prefix}:{i}", str(i))
                        self.acked.append(i)
                    except (redis.RedisError, AttributeError):
                        # redis.asyncio can trip over a connection it is closing
                        # (AttributeError on its writer) while the topology changes.
                        self.errors += 1
                        await asyncio.sleep(0.01)
                    i += 1
            finally:
                await rc.aclose()

        asyncio.run(run())

    def lost(self) -> list[int]:
        """Acknowledged writes that cannot be read back."""
        rc = _cluster_client(self.resp)
        try:
            keys = [f"{self.prefix}:{i}" for i in self.acked]
            values = rc.mget_nonatomic(keys) if keys else []
        finally:
            rc.close()
        return [i for i, v in zip(self.acked, values, strict=True) if v != str(i).encode()]


def _node_id(resp: RespCluster, index: int) -> str:
    with resp.client(index) as r:
        return str(r.execute_command("CLUSTER MYID").decode())


def test_a_live_migration_loses_no_acknowledged_write(resp_cluster: RespCluster) -> None:
    source, target = _node_id(resp_cluster, 0), _node_id(resp_cluster, 1)
    with Writer(resp_cluster, "mig") as writer, Writer(resp_cluster, "amig", True) as aio:
        time.sleep(0.5)
        moved = run_cli(
            "reshard",
            resp_cluster.nodes[0].address,
            "--from",
            source,
            "--to",
            target,
            "--slots",
            "300",
            "--yes",
        )
        time.sleep(0.5)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert len(writer.acked) > 50 and len(aio.acked) > 50
    assert writer.lost() == [] and aio.lost() == []
    wait_slots_known(resp_cluster.ports, replicas=1)
    expected = f"^0 .*:{resp_cluster.ports[1]}$"
    with resp_cluster.client(0) as r, pytest.raises(redis.ResponseError, match=expected):
        r.get(key_in_slot(b"after", 0))


def test_a_failover_loses_no_acknowledged_write(resp_cluster: RespCluster) -> None:
    replica = resp_cluster.nodes[5]  # replica of primary 2
    with Writer(resp_cluster, "fo") as writer, Writer(resp_cluster, "afo", True) as aio:
        time.sleep(0.5)
        done = run_cli("failover", replica.address)
        time.sleep(1.0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(writer.acked) > 50 and len(aio.acked) > 50
    assert writer.lost() == [] and aio.lost() == []
    key = key_in_slot(b"promoted", THIRDS[2][0])
    expected = f":{resp_cluster.ports[5]}$"
    with resp_cluster.client(2) as old, pytest.raises(redis.ResponseError, match=expected):
        old.get(key)
