"""The slotcache server: keyspace, slot routing, gossip, replication and the gRPC services.

Installed under the import name ``slotcache_server``; the version lives in
pyproject.toml alone and is read from the installed metadata.
"""
