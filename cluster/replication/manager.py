"""This node's place in replication: feeding replicas as a primary, or following as a replica.

The membership state machine decides the role; this switches the keyspace
and the streams to match. One backlog lives across roles, so a promoted
replica keeps the history it followed (and other replicas can continue from
it) and a demoted primary can be served from where it stood.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..keyspace import Keyspace
from ..replication.backlog import Backlog
from ..replication.primary import PrimaryReplication
from ..replication.replica import ReplicaSync
from ..security.node_auth import NodeAuth

log = logging.getLogger(__name__)


class NodeReplication:
    """Owns the backlog and whichever side of replication this node plays now."""

    def __init__(
        self,
        keyspace: Keyspace,
        backlog_bytes: int,
        my_id: bytes,
        primary_bus: Callable[[], str | None],
        auth: NodeAuth | None = None,
        primary_id: Callable[[], bytes] = bytes,
    ) -> None:
        self.keyspace = keyspace
        self.backlog = Backlog(backlog_bytes)
        self.my_id = my_id
        self._primary_bus = primary_bus
        self._auth = auth
        self._primary_id = primary_id
        self._maxmemory = keyspace.maxmemory
        self.primary: PrimaryReplication | None = None
        self.replica: ReplicaSync | None = None
        # When this node was last promoted from replica (time.monotonic()), or None.
        self.promoted_at: float | None = None

    @property
    def offset(self) -> int:
        """Where this node's data stands in its replication history."""
        if self.replica is not None:
            return self.replica.applied
        return self.backlog.offset

    def promoted_within(self, seconds: float) -> bool:
        """This node became primary less than ``seconds`` ago (its replicas are moving to it)."""
        return self.promoted_at is not None and time.monotonic() - self.promoted_at < seconds

    def link_age_ms(self) -> int:
        """For a replica: how long since it last heard from its primary (0 for a primary)."""
        if self.replica is None or not self.replica.last_contact:
            return 0
        return self.replica.link_age_ms()

    def become_primary(self) -> None:
        """Serve replicas; a promoted replica starts a new history that keeps the old one.

        Synchronous, so the switch happens in the loop step that promoted this
        node: a write served in between would be recorded under the old
        history, and the old primary's stream could still be applied.
        """
        if self.replica is not None:
            self.replica.halt()
            self.replica = None
            self.backlog.fork()
            self.promoted_at = time.monotonic()
            log.info("promoted: new replication id %s", self.backlog.replid)
        if self.primary is None:
            self.keyspace.expire_keys = True
            self.keyspace.maxmemory = self._maxmemory
            self.primary = PrimaryReplication(self.keyspace, self.backlog)
            self.primary.attach()

    def become_replica(self) -> None:
        """Follow the primary the membership names; replicas never evict or expire on their own.

        Synchronous like :meth:`become_primary`. A replica whose primary
        changed (it follows the winner of a failover) reconnects at once.
        """
        if self.primary is not None:
            self.primary.detach()
            self.primary = None
        if self.replica is None:
            self.keyspace.maxmemory = 0
            self.replica = ReplicaSync(
                self.keyspace,
                self.backlog,
                self.my_id,
                self._primary_bus,
                self._auth,
                self._primary_id,
            )
            self.replica.start()
        else:
            self.replica.retarget()

    async def resync(self, timeout: float) -> None:
        """For a replica: wait until it has caught up with its primary, at most ``timeout``.

        A replica restarted from its snapshot resumes first and opens its
        ports after: the writes its primary held for a replica while it was
        away are acknowledged before the rest of the start takes the loop.
        Returns early when a full sync begins or the primary cannot be
        followed (nothing to gain by waiting then).
        """
        if self.replica is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.replica.resumed.wait(), timeout)

    def heartbeat(self, now_ms: int) -> None:
        """Keep idle replicas informed (called by the node's cron)."""
        if self.primary is not None:
            self.primary.heartbeat(now_ms)

    async def stop(self) -> None:
        """Stop streaming in either direction."""
        if self.primary is not None:
            self.primary.detach()
            self.primary = None
        if self.replica is not None:
            replica, self.replica = self.replica, None
            await replica.stop()
