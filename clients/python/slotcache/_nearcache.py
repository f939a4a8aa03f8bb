"""The seam a near cache plugs into (the near cache itself is not built yet).

A near cache keeps recently read values in the client process and drops
them when the cluster says they changed (server-pushed invalidation). The
core consults it on the read path and tells it about writes; until one is
installed (``ClientCore.near_cache``) nothing here runs. Hits and misses are
counted in ``ClientStats.near_cache_hits`` / ``near_cache_misses``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from slotcache.v1 import cache_pb2 as pb


class NearCache(Protocol):
    """What the core needs from a near cache. Keys are bytes; replies are GetReply messages."""

    def lookup(self, key: bytes) -> pb.GetReply | None:
        """The reply to serve for ``key`` (found or known missing), or None to ask the node."""
        ...

    def fill(self, key: bytes, reply: pb.GetReply) -> None:
        """Remember what a node answered for ``key``."""
        ...

    def invalidate(self, keys: Sequence[bytes]) -> None:
        """Forget ``keys``: this client is about to write them."""
        ...
