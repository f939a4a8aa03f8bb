"""Generated code for the node-to-node protocols: the cluster bus, replication, migration.

Produced by ``scripts/gen-protos`` from protos/slotcache/v1; never edit by hand.
Only nodes speak these, so they live in the server package and not in the
SDK's public ``slotcache.v1``.
"""
