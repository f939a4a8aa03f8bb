"""A client process for network-fault tests: writes or reads keys and logs every attempt.

Run inside a lab host's namespace (``python -m tests.support.netlab.client``)
so that a partition can put a client on either side. Each attempt becomes
one JSON line of :class:`tests.support.history.Op`, written as soon as it
completes, so a history survives the client being cut off or killed.
SIGTERM stops it after the attempt in flight.

A writer sets its keys round-robin to ``<name>:<sequence>`` (unique per
key), deleting instead every ``--delete-every``-th time; a reader reads the
keys, from a replica with ``--replica-read``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import grpc

from slotcache.contract import Reason
from slotcache.v1 import cache_pb2
from tests.support.history import DELETE, GET, OK, REFUSED, SET, UNKNOWN, Op
from tests.support.nodes import NodeStubs, failure
from tests.support.workload import REPLICA_READ

# Errors that guarantee the operation was not applied anywhere.
NOT_APPLIED = {Reason.NOT_ENOUGH_REPLICAS, Reason.MOVED, Reason.CLUSTER_DOWN}
ERROR_PAUSE_S = 0.01


def outcome_of(exc: grpc.RpcError) -> tuple[str, str]:
    """(outcome, ``code/reason``) of a failed call."""
    error = failure(exc)
    label = f"{error.code.name}/{error.reason or '-'}"
    return (REFUSED if error.reason in NOT_APPLIED else UNKNOWN), label


class Client:
    """One client's loop; ``stopping`` ends it after the operation in flight."""

    def __init__(self, args: argparse.Namespace, keys: Sequence[bytes], out: IO[str]) -> None:
        self.args = args
        self.keys = keys
        self.out = out
        self.stopping = False
        self.entries = [NodeStubs.open(t) for t in args.targets.split(",")]

    def run(self) -> None:
        args = self.args
        deadline = time.monotonic() + args.duration
        seq = 0
        while not self.stopping and time.monotonic() < deadline:
            key = self.keys[seq % len(self.keys)]
            entry = self.entries[seq % len(self.entries)]
            if args.mode == "read":
                op = self.read(entry, key)
            else:
                round_ = seq // len(self.keys)
                delete = args.delete_every and round_ % args.delete_every == args.delete_every - 1
                op = self.delete(entry, key) if delete else self.set(entry, key, seq)
            self.out.write(op.to_json() + "\n")
            self.out.flush()
            if op.outcome != OK:
                time.sleep(ERROR_PAUSE_S)
            elif args.pause:
                time.sleep(args.pause)
            seq += 1
        for entry in self.entries:
            entry.close()

    def _op(self, kind: str, key: bytes, value: bytes | None, sent: float, **extra: object) -> Op:
        return Op(
            self.args.name,
            kind,
            key,
            value,
            sent,
            time.monotonic(),
            min_replicas=self.args.min_replicas,
            **extra,  # type: ignore[arg-type]
        )

    def set(self, entry: NodeStubs, key: bytes, seq: int) -> Op:
        value = f"{self.args.name}:{seq}".encode()
        request = cache_pb2.SetRequest(
            key=key, value=value + b"." * self.args.padding, min_replicas=self.args.min_replicas
        )
        if self.args.ttl_ms:
            request.ttl_ms = self.args.ttl_ms
        value = request.value
        sent = time.monotonic()
        try:
            entry.cache.Set(request, timeout=self.args.timeout)
        except grpc.RpcError as exc:
            outcome, label = outcome_of(exc)
            return self._op(
                SET, key, value, sent, outcome=outcome, error=label, ttl_ms=self.args.ttl_ms
            )
        return self._op(SET, key, value, sent, outcome=OK, ttl_ms=self.args.ttl_ms)

    def delete(self, entry: NodeStubs, key: bytes) -> Op:
        request = cache_pb2.DeleteRequest(key=key, min_replicas=self.args.min_replicas)
        sent = time.monotonic()
        try:
            entry.cache.Delete(request, timeout=self.args.timeout)
        except grpc.RpcError as exc:
            outcome, label = outcome_of(exc)
            return self._op(DELETE, key, None, sent, outcome=outcome, error=label)
        return self._op(DELETE, key, None, sent, outcome=OK)

    def read(self, entry: NodeStubs, key: bytes) -> Op:
        metadata = REPLICA_READ if self.args.replica_read else ()
        sent = time.monotonic()
        try:
            reply = entry.cache.Get(
                cache_pb2.GetRequest(key=key), timeout=self.args.timeout, metadata=metadata
            )
        except grpc.RpcError as exc:
            outcome, label = outcome_of(exc)
            return self._op(GET, key, None, sent, outcome=outcome, error=label)
        value = reply.value if reply.found else None
        return self._op(GET, key, value, sent, outcome=OK, replica=self.args.replica_read)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--targets", required=True, help="host:port[,host:port...], used in turn")
    p.add_argument("--keys-file", type=Path, required=True, help="JSON list of keys (latin-1)")
    p.add_argument("--out", type=Path, required=True, help="JSON lines of ops, appended")
    p.add_argument("--mode", choices=("write", "read"), default="write")
    p.add_argument("--min-replicas", type=int, default=0)
    p.add_argument("--delete-every", type=int, default=0)
    p.add_argument("--ttl-ms", type=int, default=0)
    p.add_argument("--padding", type=int, default=0, help="bytes appended to each value")
    p.add_argument("--replica-read", action="store_true")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per call")
    p.add_argument("--pause", type=float, default=0.0, help="seconds between successes")
    p.add_argument("--duration", type=float, default=600.0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    keys = [k.encode("latin-1") for k in json.loads(args.keys_file.read_text())]
    with open(args.out, "a") as out:
        client = Client(args, keys, out)

        def stop(signum: int, frame: object) -> None:
            client.stopping = True

        signal.signal(signal.SIGTERM, stop)
        client.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
