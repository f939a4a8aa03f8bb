"""Helpers for the cluster integration tests: keys per slot, stubs, statuses, polling.

The slot function here is written from the Redis Cluster specification on
purpose rather than imported from the server, so a server that hashed keys
differently would fail these tests instead of agreeing with itself.
"""

from __future__ import annotations

import binascii
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2, cache_pb2_grpc
from tests.support import security

SLOTS = 16384
REDIRECT = (("slotcache-redirect", "1"),)
DETAILS_KEY = "grpc-status-details-bin"
RPC_TIMEOUT = 5.0
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]

T = TypeVar("T")


# ---- keys and slots -------------------------------------------------------------


def slot_of(key: bytes) -> int:
    """CRC16/XMODEM of the key (or of its hash tag) modulo 16384, per the Redis spec."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


@functools.cache
def tags_by_slot() -> tuple[str, ...]:
    """A hash tag per slot: ``"{" + tags_by_slot()[s] + "}"`` in a key puts it in slot ``s``."""
    tags: list[str | None] = [None] * SLOTS
    missing = SLOTS
    i = 0
    while missing:
        tag = f"t{i}"
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def key_in_slot(prefix: bytes, slot: int, name: str = "") -> bytes:
    """A key of ``slot``: the prefix must not contain braces."""
    assert b"{" not in prefix
    key = prefix + b"{" + tags_by_slot()[slot].encode() + b"}" + name.encode()
    assert slot_of(key) == slot
    return key


# ---- nodes -------------------------------------------------------------------------


@dataclass
class NodeStubs:
    """Plain generated stubs for one node's client port."""

    address: str
    channel: grpc.Channel
    cache: cache_pb2_grpc.CacheStub
    admin: admin_pb2_grpc.AdminStub

    @classmethod
    def open(cls, address: str, via: security.Security | None = None) -> NodeStubs:
        """Stubs connecting as ``via`` says (default: as the session's servers require)."""
        channel = (via or security.current()).channel(address, CHANNEL_OPTIONS)
        return cls(
            address, channel, cache_pb2_grpc.CacheStub(channel), admin_pb2_grpc.AdminStub(channel)
        )

    def state(self) -> admin_pb2.ClusterStateReply:
        return self.admin.ClusterState(admin_pb2.ClusterStateRequest(), timeout=RPC_TIMEOUT)

    def health(self, service: str = "") -> str:
        """The standard health service's status for ``service`` ("" is the whole node)."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def topology(self) -> cache_pb2.TopologyReply:
        return self.cache.Topology(cache_pb2.TopologyRequest(), timeout=RPC_TIMEOUT)

    def keys_held(self) -> int:
        return self.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats["keys"]

    def get(self, key: bytes, metadata: Sequence[tuple[str, str]] = ()) -> bytes | None:
        reply = self.cache.Get(
            cache_pb2.GetRequest(key=key), timeout=RPC_TIMEOUT, metadata=metadata
        )
        return reply.value if reply.found else None

    def set(self, key: bytes, value: bytes, metadata: Sequence[tuple[str, str]] = ()) -> bool:
        reply = self.cache.Set(
            cache_pb2.SetRequest(key=key, value=value), timeout=RPC_TIMEOUT, metadata=metadata
        )
        return reply.applied

    def close(self) -> None:
        self.channel.close()


class Nodes:
    """Stubs for every node of a cluster, closed together."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.nodes = [NodeStubs.open(a) for a in addresses]

    def __getitem__(self, index: int) -> NodeStubs:
        return self.nodes[index]

    def __iter__(self) -> Iterator[NodeStubs]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def reopen(self, index: int) -> NodeStubs:
        """A new channel to node ``index`` (after a restart), free of any reconnect backoff."""
        old = self.nodes[index]
        old.close()
        self.nodes[index] = NodeStubs.open(old.address)
        return self.nodes[index]

    def close(self) -> None:
        for node in self.nodes:
            node.close()


# ---- topology ----------------------------------------------------------------------


def owners_by_slot(topology: cache_pb2.TopologyReply) -> list[str]:
    """The owner's client address of every slot; fails if a slot is covered twice or not at all."""
    owners: list[str | None] = [None] * SLOTS
    for node in topology.nodes:
        for r in node.slots:
            assert 0 <= r.start <= r.end < SLOTS, f"bad range {r.start}-{r.end} of {node.address}"
            for slot in range(r.start, r.end + 1):
                assert owners[slot] is None, (
                    f"slot {slot} is claimed by both {owners[slot]} and {node.address}"
                )
                owners[slot] = node.address
    uncovered = [s for s, o in enumerate(owners) if o is None]
    assert not uncovered, f"{len(uncovered)} slots uncovered, first {uncovered[:5]}"
    return [o for o in owners if o is not None]


def slots_of(topology: cache_pb2.TopologyReply, address: str) -> list[int]:
    """Every slot owned by the node at ``address``."""
    return [s for s, owner in enumerate(owners_by_slot(topology)) if owner == address]


def comparable(topology: cache_pb2.TopologyReply) -> tuple[object, ...]:
    """A topology reply without what differs by responder (its id, the order of nodes)."""
    nodes = sorted(
        (
            n.id,
            n.address,
            n.role,
            n.primary_id,
            tuple((r.start, r.end) for r in n.slots),
            n.config_epoch,
            n.failing,
        )
        for n in topology.nodes
    )
    return (tuple(nodes), topology.epoch, topology.cluster_ok)


def peer_flags(state: admin_pb2.ClusterStateReply, node_id: str) -> list[str]:
    """The flags a node's ClusterState shows for ``node_id``."""
    for peer in state.peers:
        if peer.node.id == node_id:
            return list(peer.flags)
    raise AssertionError(f"{node_id} is not in the view of {state.myself}")


# ---- statuses ----------------------------------------------------------------------


@dataclass
class Failure:
    """A failed call's status and its google.rpc.ErrorInfo, decoded by hand."""

    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]


def failure(exc: grpc.RpcError) -> Failure:
    """Decode ``grpc-status-details-bin`` with google.rpc.status_pb2 and error_details_pb2."""
    call: grpc.Call = exc  # type: ignore[assignment]
    reason, metadata = "", {}
    for key, value in call.trailing_metadata() or ():
        if key != DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        assert status.code == call.code().value[0]
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
    return Failure(call.code(), call.details() or "", reason, metadata)


def expect_failure(call: Callable[[], object]) -> Failure:
    """Run ``call``, which must fail with an RPC error, and decode that error."""
    try:
        result = call()
    except grpc.RpcError as exc:
        return failure(exc)
    raise AssertionError(f"the call succeeded: {result!r}")


# ---- time --------------------------------------------------------------------------


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        try:
            last = probe()
        except grpc.RpcError as exc:
            last = None
            if time.monotonic() >= deadline:
                message = f"timed out after {timeout}s waiting for {what}: {exc}"
                raise AssertionError(message) from exc
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def eventually(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last verdict, for an assert."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
