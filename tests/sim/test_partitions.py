"""Partitions: the minority side goes down, the majority marks it FAIL, and healing heals.

Nine primaries, node_timeout 1000 ms, split 4 | 5. What Redis Cluster does,
and what is asserted here:

- The minority (4 of 9 slot-owning primaries) cannot reach a majority of
  primaries, so every node on it says the cluster is down. It marks the
  other side PFAIL but never FAIL: it cannot collect reports from a majority.
- The majority marks every minority node FAIL (its 5 primaries are a
  majority of 9). Without replicas nobody can take over the minority's
  slots, so with require_full_coverage (the default) the majority is down
  too; with require_full_coverage off it stays up throughout.

Bound for the verdicts: 3 x node_timeout + 4 P (P the probe interval).
Unlike a single kill (see test_failure_detection), every node on one side
must suspect every node on the other, so the random delay before the first
probe is a maximum over several nodes: measured over 39 seeds, the last
verdict came 2.5 x node_timeout after the cut on average, 3.2 x at worst.

Healing: a PFAIL mark goes with the next PONG, and pings to suspected or
failed nodes are resent every node_timeout/5, so after a long partition
every view is clean within node_timeout/5 + 2 ticks. A FAIL mark on a
primary that owns slots is kept for 2 x node_timeout after it was set
(Redis's rule, which gives a replica time to take over) and is then lifted
by the next PONG: healing right after the verdicts takes up to
2 x node_timeout + node_timeout/5 + 2 ticks from the last verdict.
"""

from __future__ import annotations

import pytest

from slotcache_server.membership.model import FAIL, PFAIL, MembershipConfig
from slotcache_server.simnet import SimNetwork, SimNode
from tests.sim.simhelpers import all_see, flags_of, formed, none_see_failing

NT = 1_000
N = 9
MINORITY = 4


def split(net: SimNetwork) -> tuple[list[SimNode], list[SimNode]]:
    minority, majority = net.nodes[:MINORITY], net.nodes[MINORITY:]
    net.partition([node.index for node in minority])
    return minority, majority


def verdict_bound(config: MembershipConfig) -> int:
    return 3 * config.node_timeout_ms + 4 * config.probe_interval_ms


def verdicts_reached(minority: list[SimNode], majority: list[SimNode]) -> bool:
    return not any(node.membership.ok for node in minority) and all_see(majority, minority, FAIL)


def assert_partitioned_views(minority: list[SimNode], majority: list[SimNode]) -> None:
    for node in minority:
        assert not node.membership.ok
        for other in majority:
            flags = flags_of(node, other)
            assert flags & PFAIL
            assert not flags & FAIL, "the minority cannot gather a majority of reports"
    assert all_see(majority, minority, FAIL)
    # Each side still sees its own members healthy.
    assert none_see_failing(minority, minority)
    assert none_see_failing(majority, majority)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_minority_goes_down_and_majority_marks_it_fail(seed):
    config = MembershipConfig(node_timeout_ms=NT)
    net = formed(N, config, seed)
    net.run_for(100 * seed)
    minority, majority = split(net)
    cut_at = net.now
    at = net.wait_for(lambda: verdicts_reached(minority, majority), verdict_bound(config), 10)
    assert at is not None, f"no verdict within {verdict_bound(config)} ms"
    assert at - cut_at >= NT, "a verdict before node_timeout had passed"
    assert_partitioned_views(minority, majority)
    # Without replicas the minority's slots are uncovered: the majority is down too.
    assert not any(node.membership.ok for node in majority)
    # And it stays that way while the partition lasts.
    net.run_for(3 * NT)
    assert_partitioned_views(minority, majority)


def test_majority_stays_up_without_full_coverage():
    config = MembershipConfig(node_timeout_ms=NT, require_full_coverage=False)
    net = formed(N, config, seed=4)
    minority, majority = split(net)
    deadline = net.now + verdict_bound(config)
    while net.now < deadline:
        net.run_for(10)
        assert all(node.membership.ok for node in majority), f"majority down at {net.now}"
    assert_partitioned_views(minority, majority)


@pytest.mark.parametrize("seed", [1, 2])
def test_views_heal_quickly_after_a_long_partition(seed):
    config = MembershipConfig(node_timeout_ms=NT)
    net = formed(N, config, seed)
    minority, majority = split(net)
    assert net.wait_for(lambda: verdicts_reached(minority, majority), verdict_bound(config), 10)
    # Long enough for every FAIL mark to be older than 2 x node_timeout.
    net.run_for(2 * NT + 100)
    net.heal()
    healed_at = net.now
    bound = config.resend_ms + 2 * config.tick_ms
    at = net.wait_for(net.converged, bound, step_ms=10)
    assert at is not None, f"views not clean {bound} ms after the partition ended"
    assert none_see_failing(net.nodes, net.nodes)
    assert all(node.membership.ok for node in net.nodes)
    assert at > healed_at


def test_fail_sticks_for_two_node_timeouts_then_heals():
    config = MembershipConfig(node_timeout_ms=NT)
    net = formed(N, config, seed=5)
    minority, majority = split(net)
    assert net.wait_for(lambda: verdicts_reached(minority, majority), verdict_bound(config), 10)
    net.heal()
    last_verdict = max(
        viewer.membership.nodes[subject.id].fail_time for viewer in majority for subject in minority
    )
    first_verdict = min(
        viewer.membership.nodes[subject.id].fail_time for viewer in majority for subject in minority
    )
    # PFAIL on the minority side is lifted at once...
    net.run_for(config.resend_ms + 2 * config.tick_ms)
    assert none_see_failing(minority, majority)
    # ...but the majority keeps the FAIL marks until they are 2 x node_timeout old.
    net.run_until(first_verdict + 2 * NT - 1)
    assert all_see(majority, minority, FAIL)
    bound = last_verdict + 2 * NT + config.resend_ms + 2 * config.tick_ms
    at = net.wait_for(net.converged, bound - net.now, step_ms=10)
    assert at is not None, "views not clean 2 x node_timeout after the verdicts"
    assert all(node.membership.ok for node in net.nodes)
