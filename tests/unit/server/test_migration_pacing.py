"""The migration pacer: how long the copy pauses so that it takes at most its share."""

from __future__ import annotations

import pytest

from slotcache_server.migration.pacing import Pacer


def test_a_half_share_pauses_as_long_as_it_worked() -> None:
    pacer = Pacer(0.5)
    assert pacer.pause_after(0.004) == pytest.approx(0.004)
    assert pacer.pause_after(0.002) == pytest.approx(0.002)
    assert pacer.paused_s == pytest.approx(0.006)


def test_a_quarter_share_pauses_three_times_the_work() -> None:
    assert Pacer(0.25).pause_after(0.001) == pytest.approx(0.003)


def test_a_full_share_never_pauses() -> None:
    assert Pacer(1.0).pause_after(1.0) == 0.0


def test_with_an_activity_counter_it_pauses_only_while_clients_are_served() -> None:
    ops = [100]
    pacer = Pacer(0.5, lambda: ops[0])
    assert pacer.pause_after(0.01) == 0.0  # no operation since it started: idle
    ops[0] += 3
    assert pacer.pause_after(0.01) == pytest.approx(0.01)
    assert pacer.pause_after(0.01) == 0.0  # idle again


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        Pacer(share)
