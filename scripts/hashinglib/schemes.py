"""The schemes the study compares, in the order its tables list them."""

from __future__ import annotations

from hashinglib.bounded import BoundedLoads
from hashinglib.jump import Jump
from hashinglib.maglev import Maglev
from hashinglib.placement import Scheme
from hashinglib.rendezvous import Rendezvous
from hashinglib.ring import Ring
from hashinglib.slots import Slots

RING_VNODES = (1, 10, 100, 1000)
WHAT_IF_SLOTS = 65536


def alternatives() -> list[Scheme]:
    """Everything slotcache's fixed slots are compared with."""
    return [
        *(Ring(v) for v in RING_VNODES),
        Jump(),
        Rendezvous(),
        BoundedLoads(c=1.25, vnodes=1),
        Maglev(),
    ]


def placement_schemes() -> list[Scheme]:
    """Compared on balance and cost: the alternatives, slotcache's slots, and a what-if."""
    return [
        *alternatives(),
        Slots(),
        Slots(rebalance="keys"),
        Slots(slot_count=WHAT_IF_SLOTS),
    ]


def weighted_schemes() -> list[Scheme]:
    """Compared on heterogeneous servers: slots even, by weight, and by keys with weights."""
    return [*alternatives(), Slots(), Slots(rebalance="slots"), Slots(rebalance="keys")]


def failure_schemes() -> list[Scheme]:
    """Compared on failures: the alternatives and the even slot table (two failover modes)."""
    return [*alternatives(), Slots()]
