"""The active expiry sampler over a million keys, against its real CPU budget.

Half the keys are due; the sampler must bring the stale share under 10%
within a bounded number of cycles, never overrun a cycle's budget by more
than the documented slack, and delete nothing that was not due. Filling a
million keys takes seconds, so this runs outside the unit tier.
"""

import random
import time

import pytest

from slotcache_server.keyspace import Keyspace
from tests.support.keyspace import START_MS, FakeClock

# A cycle checks its budget before each loop of `keys_per_loop` samples, so it
# may overrun by one loop (well under 0.1 ms for 20 keys here) plus the timer's
# granularity. 2 ms is the documented slack.
BUDGET_SLACK_S = 0.002

N_KEYS = 1_000_000
# A cycle keeps going while more than half the acceptable stale share of what it
# sampled had expired, so it uses its whole budget until the share is well under
# 10%. With Redis's rule (stop on the first 20-key sample at <= 10%) this took
# about 12,500 cycles; the bound here leaves a wide margin over what is measured.
MAX_CYCLES_TO_10_PERCENT = 200


def test_sampler_reclaims_a_million_keys_within_budget():
    clock = FakeClock()
    ks = Keyspace(clock_ms=clock, random=random.Random(2024).random)
    value = b"v"
    soon, far = START_MS + 1_000, START_MS + 10**9
    for i in range(N_KEYS):
        ks.set_with_deadline(b"key:%08d" % i, value, soon if i % 2 == 0 else far)
    assert ks.ttl_key_count() == N_KEYS
    clock.now += 2_000
    due = N_KEYS // 2
    budget_s = ks.sampler.budget_s
    assert budget_s == pytest.approx(0.025)

    cycles = 0
    removed = 0
    max_elapsed = 0.0
    share = 0.5
    while share >= 0.10:
        assert cycles < MAX_CYCLES_TO_10_PERCENT, f"stale share still {share:.3f}"
        count_before = ks.key_count
        # The budget is measured in this thread's CPU time here: the server
        # measures wall time, but on a test machine with more runnable
        # processes than cores the OS would eat the wall-clock budget and the
        # cycle count would measure the machine's load, not the sampler.
        stats = ks.run_expiry_cycle(timer=time.thread_time)
        cycles += 1
        removed += stats.expired
        max_elapsed = max(max_elapsed, stats.elapsed_s)
        assert stats.elapsed_s <= budget_s + BUDGET_SLACK_S, stats
        assert ks.key_count == count_before - stats.expired
        assert ks.stats.expired_active == removed
        share = (due - removed) / ks.ttl_key_count()
    print(
        f"\nsampler: {cycles} cycles to <10% stale, final {share:.4f}, "
        f"max cycle {max_elapsed * 1000:.2f} ms of CPU"
    )
    assert max_elapsed >= budget_s  # the early cycles really were limited by the budget
    # Nothing that was not due has gone.
    assert ks.key_count == N_KEYS - removed
    assert ks.ttl_key_count() == N_KEYS - removed
    assert all(ks.exists(b"key:%08d" % i) for i in range(1, N_KEYS, 2))
    assert ks.stats.expired_lazy == 0
