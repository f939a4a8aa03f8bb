"""slotcache: the Python SDK.

``Client`` blocks; ``AsyncClient`` is for asyncio. Both take and return bytes
and raise the typed exceptions in :mod:`slotcache.errors`. By default they
route each key straight to the node that owns its slot (``routing="smart"``);
``routing="proxy"`` sends everything to one node. See docs/client.md.
"""

from slotcache._async import AsyncClient
from slotcache._retry import RetryPolicy
from slotcache._slots import key_slot
from slotcache._stats import ClientStats
from slotcache._sync import Client
from slotcache.errors import (
    Cancelled,
    ClusterDown,
    FailedPrecondition,
    InvalidArgument,
    Moved,
    OutOfMemory,
    ResourceExhausted,
    SlotcacheError,
    Timeout,
    Unavailable,
)

__all__ = [
    "AsyncClient",
    "Cancelled",
    "Client",
    "ClientStats",
    "ClusterDown",
    "FailedPrecondition",
    "InvalidArgument",
    "Moved",
    "OutOfMemory",
    "ResourceExhausted",
    "RetryPolicy",
    "SlotcacheError",
    "Timeout",
    "Unavailable",
    "key_slot",
]
