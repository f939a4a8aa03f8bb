"""clusterctl: operate a slotcache cluster."""
