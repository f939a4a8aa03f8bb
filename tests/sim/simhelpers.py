"""Small helpers shared by the simulation tests."""

from __future__ import annotations

from collections.abc import Iterable

from slotcache_server.membership.model import FAIL, FAILING, PFAIL, MembershipConfig
from slotcache_server.membership.step import NodeFailed
from slotcache_server.simnet import SimNetwork, SimNode, create_cluster


def formed(n: int, config: MembershipConfig, seed: int, timeout_ms: int = 120_000) -> SimNetwork:
    """A created cluster, run until every view agrees (fails the test if it does not)."""
    net = create_cluster(n, config, seed=seed)
    at = net.wait_for(net.converged, timeout_ms, step_ms=250)
    assert at is not None, f"{n} nodes did not converge within {timeout_ms} ms"
    return net


def flags_of(viewer: SimNode, subject: SimNode) -> int:
    """The flags ``viewer`` has for ``subject``."""
    return viewer.membership.nodes[subject.id].flags


def all_see(viewers: Iterable[SimNode], subjects: Iterable[SimNode], flag: int) -> bool:
    """Every viewer has ``flag`` set for every subject."""
    subjects = list(subjects)
    return all(flags_of(v, s) & flag for v in viewers for s in subjects)


def none_see_failing(viewers: Iterable[SimNode], subjects: Iterable[SimNode]) -> bool:
    """No viewer sees any subject PFAIL or FAIL."""
    subjects = list(subjects)
    return not any(flags_of(v, s) & FAILING for v in viewers for s in subjects if v is not s)


def fail_times(net: SimNetwork, victim: bytes, since: int) -> dict[int, int]:
    """When each node first marked ``victim`` FAIL at or after ``since``, by node index."""
    times: dict[int, int] = {}
    for record in net.events:
        if (
            record.time >= since
            and isinstance(record.event, NodeFailed)
            and record.event.node == victim
        ):
            times.setdefault(record.node, record.time)
    return times


__all__ = ["FAIL", "PFAIL", "all_see", "fail_times", "flags_of", "formed", "none_see_failing"]
