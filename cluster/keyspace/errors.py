"""Errors the keyspace raises; the service layer maps each to a gRPC status."""

from __future__ import annotations


class KeyspaceError(Exception):
    """Base class: the operation was refused and the keyspace is unchanged."""


class OutOfMemory(KeyspaceError):
    """maxmemory is reached and the policy cannot (or may not) evict enough."""


class NotAnInteger(KeyspaceError):
    """Incr found a value that is not a base-10 signed 64-bit integer."""


class OutOfRange(KeyspaceError):
    """Incr would leave the signed 64-bit range."""
