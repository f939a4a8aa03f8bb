"""--resp-routing forward: a plain Redis client of any node reaches every key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import ServerFactory
from tests.support.resp import RespCluster, start_resp_cluster


@pytest.fixture(scope="module")
def forwarding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespCluster]:
    factory = ServerFactory(tmp_path_factory.mktemp("resp-forward"))
    try:
        yield start_resp_cluster(factory, primaries=3, replicas=0, routing="forward")
    finally:
        factory.close()


def test_a_plain_client_of_one_node_reads_and_writes_every_slot(forwarding: RespCluster) -> None:
    with forwarding.client(0) as r:
        for i in range(200):
            r.set(f"fw:{i}", str(i))
        assert [r.get(f"fw:{i}") for i in range(200)] == [str(i).encode() for i in range(200)]
        assert r.mget([f"fw:{i}" for i in range(200)]) == [str(i).encode() for i in range(200)]
        assert r.incrby("fw:counter", 5) == 5
        assert r.set("fw:0", "new", get=True) == b"0"
        assert r.ttl("fw:1") == -1 and r.expire("fw:1", 100) and r.ttl("fw:1") == 100
        assert r.delete(*[f"fw:{i}" for i in range(200)]) == 200
    with forwarding.client(2) as other:
        assert other.get("fw:counter") == b"5"


def test_pipelined_commands_that_wait_keep_their_order(forwarding: RespCluster) -> None:
    with forwarding.client(1) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"order:{i % 10}", str(i))
            pipe.get(f"order:{i % 10}")
        replies = pipe.execute()
    assert replies[1::2] == [str(i).encode() for i in range(300)]
