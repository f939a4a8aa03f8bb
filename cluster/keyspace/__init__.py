"""The keyspace: pure data structures for keys, values, TTLs and eviction.

Nothing here does I/O or knows about asyncio or gRPC, so it can be tested
exhaustively and driven by a fake clock.
"""

from cluster.keyspace.errors import KeyspaceError, NotAnInteger, OutOfMemory, OutOfRange
from cluster.keyspace.events import KeyspaceListener, RemovalCause
from cluster.keyspace.eviction import EvictionPolicy
from cluster.keyspace.expiry import CycleStats, SamplerConfig
from cluster.keyspace.store import Condition, Keyspace, KeyspaceStats

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
