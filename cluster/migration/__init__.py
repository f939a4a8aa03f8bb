"""Atomic slot migration between primaries (ARCHITECTURE section 5)."""
