"""slotcache Python SDK."""
