"""slotcache: the Python SDK.

``Client`` blocks; ``AsyncClient`` is for asyncio. Both take and return bytes
and raise the typed exceptions in :mod:`slotcache.errors`.
"""

from slotcache._async import AsyncClient
from slotcache._sync import Client
from slotcache.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
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
    "FailedPrecondition",
    "InvalidArgument",
    "OutOfMemory",
    "ResourceExhausted",
    "SlotcacheError",
    "Timeout",
    "Unavailable",
]
