"""slotcache: the Python SDK.

``Client`` blocks; ``AsyncClient`` is for asyncio. Both route each key
straight to the node that owns its slot (``routing="smart"``) over one
auto-pipelined stream per node, encode values that are not bytes with
msgpack (pluggable: :mod:`slotcache.codecs`), can encrypt every value
(:class:`slotcache.crypto.Keyring`), can keep hot values in-process with a
server-invalidated near cache (:class:`NearCacheConfig`), and raise the typed
exceptions in :mod:`slotcache.errors`. See docs/client.md.
"""

from slotcache._async import AsyncClient, AsyncPipeline
from slotcache._nearcache import NearCacheConfig
from slotcache._retry import RetryPolicy
from slotcache._stats import ClientStats, Histogram
from slotcache._sync import Client, Pipeline
from slotcache._tls import TlsOptions
from slotcache.codecs import Codec, JsonCodec, MsgpackCodec, PickleCodec
from slotcache.contract import key_slot
from slotcache.crypto import Keyring
from slotcache.errors import (
    Cancelled,
    ClusterDown,
    DecodeError,
    DecryptionError,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    MessageTooLarge,
    Moved,
    NotEnoughReplicas,
    NotSent,
    OutOfMemory,
    PermissionDenied,
    ReplicationTimeout,
    ResourceExhausted,
    SlotcacheError,
    Timeout,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AsyncClient",
    "AsyncPipeline",
    "Cancelled",
    "Client",
    "ClientStats",
    "ClusterDown",
    "Codec",
    "DecodeError",
    "DecryptionError",
    "FailedPrecondition",
    "Histogram",
    "InvalidArgument",
    "JsonCodec",
    "Keyring",
    "LimitExceeded",
    "MessageTooLarge",
    "Moved",
    "MsgpackCodec",
    "NearCacheConfig",
    "NotEnoughReplicas",
    "NotSent",
    "OutOfMemory",
    "PermissionDenied",
    "PickleCodec",
    "Pipeline",
    "ReplicationTimeout",
    "ResourceExhausted",
    "RetryPolicy",
    "SlotcacheError",
    "Timeout",
    "TlsOptions",
    "Unauthenticated",
    "Unavailable",
    "key_slot",
]
