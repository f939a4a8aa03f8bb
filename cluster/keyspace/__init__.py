"""The keyspace: pure data structures for keys, values, TTLs and eviction.

Nothing here does I/O or knows about asyncio or gRPC, so it can be tested
exhaustively and driven by a fake clock.
"""

from ..keyspace.errors import KeyspaceError, NotAnInteger, OutOfMemory, OutOfRange
from ..keyspace.events import KeyspaceListener, RemovalCause
from ..keyspace.eviction import EvictionPolicy
from ..keyspace.expiry import CycleStats, SamplerConfig
from ..keyspace.store import Condition, Keyspace, KeyspaceStats

__all__ = [
    "Condition",
    "CycleStats",
    "EvictionPolicy",
    "Keyspace",
    "KeyspaceError",
    "KeyspaceListener",
    "KeyspaceStats",
    "NotAnInteger",
    "OutOfMemory",
    "OutOfRange",
    "RemovalCause",
    "SamplerConfig",
]
