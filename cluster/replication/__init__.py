"""Replication: a primary streams every change to its replicas (ARCHITECTURE section 4)."""
