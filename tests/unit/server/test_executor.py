import grpc

from slotcache.v1 import cache_pb2 as pb
from slotcache_server.executor import Executor, Limits
from slotcache_server.keyspace import Keyspace


def test_an_unexpected_failure_becomes_an_internal_error_result():
    keyspace = Keyspace()
    executor = Executor(keyspace, Limits(64, 1024))

    def broken(key):
        raise RuntimeError("boom")

    keyspace.get = broken  # type: ignore[method-assign]
    result = executor.run(pb.Operation(id=7, get=pb.GetRequest(key=b"k")))
    assert result.id == 7
    assert result.error.code == grpc.StatusCode.INTERNAL.value[0]
    assert "boom" in result.error.message
    # The executor itself keeps working for other operations.
    ok = executor.run(pb.Operation(id=8, set=pb.SetRequest(key=b"k", value=b"v")))
    assert ok.set.applied


def test_out_of_memory_carries_its_reason():
    executor = Executor(Keyspace(maxmemory=1), Limits(64, 1024))
    result = executor.run(pb.Operation(id=1, set=pb.SetRequest(key=b"k", value=b"v")))
    assert result.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert result.error.reason == "OOM"
