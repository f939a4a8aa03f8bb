"""Snapshots of the keyspace on disk, so a restarted node comes back with its data."""
