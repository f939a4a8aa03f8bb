"""The slotcache server: keyspace, slot routing, gossip, replication and the gRPC services."""

__version__ = "0.1.0"
