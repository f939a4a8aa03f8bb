"""Write durability (min_replicas) and replica reads, as the Cache service applies them.

A write that asks for ``min_replicas`` is refused before it is applied when
fewer replicas are connected (so the caller knows it did not happen), and
otherwise applied and then held until that many replicas acknowledge it. If
they do not in time, the caller learns the write may or may not survive:
it is on the primary but perhaps on no replica.

Replicas reconnect for moments at a time: to a replica just promoted (a
failover or a primary's handoff at shutdown), or after a restart. While the
cluster says this primary has enough live replicas but fewer are in sync, or
just after this node was promoted, a write first waits for them (up to the
replica timeout), applying nothing, rather than being refused at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from slotcache.contract import LAG_MS_KEY, LAG_OPS_KEY, Op, Reason

from ..executor import CommandError
from ..replication.manager import NodeReplication
from ..replication.primary import ReplicationTimeout


class Durability:
    """The node's replication as the request path needs it."""

    def __init__(
        self,
        replication: NodeReplication | None,
        default_min: int,
        timeout_s: float,
        live_replicas: Callable[[], int] = lambda: 0,
    ) -> None:
        self.replication = replication
        self.default_min = default_min
        self.timeout_s = timeout_s
        # How many replicas the cluster view gives this node that are not failing.
        self._live_replicas = live_replicas

    def required(self, op: Op, request: Any) -> int:
        """How many replicas must hold this write (0 for reads)."""
        if not op.writes:
            return 0
        if request.HasField("min_replicas"):
            return int(request.min_replicas)
        return self.default_min

    async def await_replicas(self, needed: int, timeout: float | None) -> None:
        """Before applying anything: wait for expected replicas to come back in sync.

        Returns at once when enough are in sync, or when the cluster view
        does not promise enough live replicas (the refusal is certain then)
        and this node was not just promoted.
        """
        primary = self.replication.primary if self.replication is not None else None
        if primary is None or primary.in_sync_replicas() >= needed:
            return
        assert self.replication is not None
        # Just after a promotion the view still has the replicas following the
        # old primary until they hear of the new one: wait for them anyway.
        expected = self.replication.promoted_within(self.timeout_s)
        if not expected and self._live_replicas() < needed:
            return
        limit = self.timeout_s if timeout is None else min(timeout, self.timeout_s)
        await primary.wait_in_sync(needed, max(limit, 0.0))

    def check_available(self, needed: int) -> None:
        """Refuse, before applying anything, a write that cannot get enough replicas."""
        primary = self.replication.primary if self.replication is not None else None
        available = primary.in_sync_replicas() if primary is not None else 0
        if available < needed:
            raise CommandError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the write needs {needed} replicas but {available} are in sync; "
                "it was not applied",
                Reason.NOT_ENOUGH_REPLICAS,
                {"required": str(needed), "available": str(available)},
            )

    async def wait(self, needed: int, timeout: float | None) -> None:
        """Hold an applied write until ``needed`` replicas have it, or fail saying so."""
        primary = self.replication.primary if self.replication is not None else None
        if primary is None:
            raise CommandError(
                grpc.StatusCode.UNAVAILABLE, "this node stopped being a primary during the write"
            )
        limit = self.timeout_s if timeout is None else min(timeout, self.timeout_s)
        try:
            await primary.wait_for(primary.offset, needed, max(limit, 0.001))
        except ReplicationTimeout as exc:
            raise CommandError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{exc}; the write is applied on the primary and may or may not survive a failover",
                Reason.REPLICATION_TIMEOUT,
                {"required": str(exc.required), "acknowledged": str(exc.acked)},
            ) from None

    def serves_replica_reads(self) -> bool:
        """This node is a replica holding a complete copy of its primary."""
        replica = self.replication.replica if self.replication is not None else None
        return replica is not None and replica.synced and not replica.syncing

    def lag_metadata(self) -> tuple[tuple[str, str], ...]:
        """Trailing metadata that tells a replica reader how stale its answer may be."""
        replica = self.replication.replica if self.replication is not None else None
        if replica is None:
            return ()
        return ((LAG_MS_KEY, str(replica.lag_ms())), (LAG_OPS_KEY, str(replica.lag_ops)))
