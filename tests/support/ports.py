"""Blocks of free loopback ports for clusters started by ``clusterctl up`` (consecutive ports)."""

from __future__ import annotations

import random

from slotcache.ctl import local

BUS_OFFSET = 10000


def free_port_block(n: int, offset: int = BUS_OFFSET) -> int:
    """A base port such that base..base+n-1 and the same plus ``offset`` are all free.

    Bases are drawn below the kernel's ephemeral range (32768+), together
    with their bus ports, so outgoing connections rarely collide with them.
    """
    for _ in range(200):
        base = random.randrange(10000, 20000 - n)
        ports = [p for i in range(n) for p in (base + i, base + i + offset)]
        if not local.busy_ports(ports):
            return base
    raise RuntimeError("no free block of ports found")
