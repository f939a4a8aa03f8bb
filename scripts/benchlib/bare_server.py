"""A bare ``grpc.aio`` server for slotcache.v1.Cache/Get that only looks a key up in a dict.

It is the floor for the server-only workload: the same generated stubs, the
same Python gRPC stack and the same wire messages as slotcache, with no
validation, slots, counters or keyspace. slotcache's Get throughput divided by
this one's is the cost of slotcache's own code on top of grpc.aio.

Run as ``python -m benchlib.bare_server --port N [--keys N]`` with ``scripts/``
on the import path; it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from typing import Any

import grpc

from benchlib import dataset
from slotcache.v1 import cache_pb2, cache_pb2_grpc


class BareCache(cache_pb2_grpc.CacheServicer):
    """Get from a plain dict; every other RPC stays UNIMPLEMENTED."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self._data = data

    async def Get(
        self, request: cache_pb2.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cache_pb2.GetReply:
        value = self._data.get(request.key)
        if value is None:
            return cache_pb2.GetReply()
        return cache_pb2.GetReply(found=True, value=value)


async def serve(host: str, port: int, data: dict[bytes, bytes]) -> None:
    """Serve until a termination signal arrives."""
    server = grpc.aio.server()
    # The stubs mark every RPC abstract; the base class's bodies answer UNIMPLEMENTED,
    # which is all the other RPCs need here.
    servicer = BareCache(data)  # type: ignore[abstract]
    cache_pb2_grpc.add_CacheServicer_to_server(servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot listen on {host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"bare server ready on {host}:{port} with {len(data)} keys", flush=True)
    await stop.wait()
    await server.stop(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the dict with the benchmark's keys and value, then serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=int, default=1, help="how many benchmark keys to hold")
    parser.add_argument("--value-bytes", type=int, default=dataset.VALUE_BYTES)
    args = parser.parse_args(argv)
    value = dataset.value(args.value_bytes)
    data = dict.fromkeys(dataset.keys(args.keys), value)
    asyncio.run(serve(args.host, args.port, data))


if __name__ == "__main__":
    main()
