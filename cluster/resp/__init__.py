"""The Redis-protocol (RESP2 and RESP3) listener: a thin adapter over the routing decision.

Pure parts (reply encoding, the command table, argument parsing, the
CLUSTER and INFO replies) are kept apart from the asyncio protocol class in
:mod:`.connection`, which carries each command out through the same
executor, routing decision and forwarder as the gRPC Cache service.
"""
