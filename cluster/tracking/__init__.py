"""Near-cache invalidation: the server side of client-side caching (Redis 6 CLIENT TRACKING).

- :mod:`cluster.tracking.table`: which subscriber read which key, bounded (pure).
- :mod:`cluster.tracking.outbox`: one subscriber's pending invalidations,
  batching, sequence numbers and the queue bound (pure).
- :mod:`cluster.tracking.hub`: subscriptions, the keyspace listener and slot
  moves (pure: no asyncio, no gRPC).
- :mod:`cluster.tracking.service`: the Subscribe stream and tracked reads
  over gRPC, and the tasks that watch slot ownership and free memory.

The protocol for client authors is docs/near-cache-protocol.md.
"""
