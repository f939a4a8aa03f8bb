"""The active expiry sampler (ARCHITECTURE.md section 6).

Expiry is driven by a fake clock; the CPU budget of a cycle is measured either
with the real ``time.perf_counter`` (the default) or with a fake timer.
tests/heavy/test_sampler_million_keys.py runs the same sampler over a
million keys against its real CPU budget.
"""

import random

import pytest

from slotcache_server.keyspace import Keyspace, SamplerConfig
from slotcache_server.keyspace.expiry import run_cycle
from tests.support.keyspace import START_MS, FakeClock


class FakeTimer:
    """A perf_counter stand-in that only moves when told to."""

    def __init__(self, step_s=0.0):
        self.t = 100.0
        self.step_s = step_s
        self.calls = 0

    def __call__(self):
        self.calls += 1
        self.t += self.step_s
        return self.t


class ScriptedSource:
    """An ExpirySource whose samples follow a script of expired/live flags.

    Each sample costs `sample_cost_s` on the fake timer, so a loop has a known cost.
    """

    def __init__(self, script, timer=None, sample_cost_s=0.0, size=1_000_000):
        self.script = list(script)
        self.timer = timer
        self.sample_cost_s = sample_cost_s
        self.size = size
        self.expired = []
        self.now_ms = START_MS
        self.served = 0

    def ttl_key_count(self):
        return self.size

    def expire_sample(self, n, now_ms):
        expired = 0
        for _ in range(n):
            if self.timer is not None:
                self.timer.t += self.sample_cost_s
            is_expired = self.script.pop(0) if self.script else True
            self.served += 1
            if is_expired:
                self.expired.append(b"k%d" % self.served)
                expired += 1
        self.size -= expired
        return expired


def test_sampler_config_defaults_and_validation():
    config = SamplerConfig()
    assert (config.hz, config.keys_per_loop, config.stale_percent, config.cpu_percent) == (
        10.0,
        20,
        10.0,
        25.0,
    )
    assert config.period_s == pytest.approx(0.1)
    assert config.budget_s == pytest.approx(0.025)
    assert SamplerConfig(hz=4, cpu_percent=50).budget_s == pytest.approx(0.125)
    for bad in (
        {"hz": 0},
        {"keys_per_loop": 0},
        {"stale_percent": -1},
        {"stale_percent": 101},
        {"cpu_percent": 0},
        {"cpu_percent": 100.5},
    ):
        with pytest.raises(ValueError):
            SamplerConfig(**bad)


def test_cycle_stops_once_its_samples_show_at_most_half_the_stale_share():
    # The cycle judges everything sampled so far against half of stale_percent (5%).
    # Loop 1: 3/20 = 15% -> go on. Loop 2: 3/40 = 7.5% -> go on. Loop 3: 3/60 = 5% -> stop.
    first = [True] * 3 + [False] * 17
    clean = [False] * 20
    source = ScriptedSource(first + clean + clean + [True] * 100)
    stats = run_cycle(source, SamplerConfig(), START_MS, FakeTimer())
    assert stats.loops == 3
    assert stats.sampled == 60
    assert stats.expired == 3 == len(source.expired)
    assert not stats.out_of_time


def test_a_noisy_clean_sample_does_not_end_a_cycle_early():
    # Redis would stop after loop 2 (2/20 = 10%); here the cycle's running share is 12.5%.
    source = ScriptedSource([True] * 3 + [False] * 17 + [True] * 2 + [False] * 18 + [False] * 400)
    stats = run_cycle(source, SamplerConfig(), START_MS, FakeTimer())
    assert stats.loops > 2
    assert stats.expired * 20 <= stats.sampled


def test_cycle_with_nothing_expired_runs_one_loop():
    source = ScriptedSource([False] * 1_000)
    stats = run_cycle(source, SamplerConfig(), START_MS, FakeTimer())
    assert (stats.loops, stats.sampled, stats.expired) == (1, 20, 0)
    assert source.expired == []


def test_cycle_with_no_ttl_keys_does_nothing():
    source = ScriptedSource([], size=0)
    stats = run_cycle(source, SamplerConfig(), START_MS, FakeTimer())
    assert (stats.loops, stats.sampled, stats.expired, stats.out_of_time) == (0, 0, 0, False)


def test_cycle_samples_no_more_than_the_keys_there_are():
    ks = Keyspace(clock_ms=FakeClock(), random=random.Random(1).random)
    for i in range(5):
        ks.set_with_deadline(b"k%d" % i, b"v", START_MS - 1)
    stats = ks.run_expiry_cycle(timer=FakeTimer())
    # Samples are drawn with replacement, so a loop may pick a key twice, but no
    # loop asks for more samples than there are keys, and the cycle goes on
    # until they are all gone.
    assert stats.sampled <= 5 + 4 + 3 + 2 + 1
    assert stats.expired == 5
    assert ks.key_count == 0
    assert ks.used_memory == 0


def test_cycle_stops_when_out_of_budget_and_overruns_by_at_most_one_loop():
    timer = FakeTimer()
    config = SamplerConfig()  # 25 ms budget
    per_sample_s = 0.000_1  # so one loop of 20 costs 2 ms
    loop_cost_s = per_sample_s * config.keys_per_loop
    source = ScriptedSource([], timer=timer, sample_cost_s=per_sample_s)  # all expired
    stats = run_cycle(source, config, START_MS, timer)
    assert stats.out_of_time
    assert stats.expired == stats.sampled == stats.loops * config.keys_per_loop
    assert config.budget_s <= stats.elapsed_s <= config.budget_s + loop_cost_s
    # It ran every loop the budget allowed: 13 loops start at 0, 2, ..., 24 ms.
    assert stats.loops == 13


def test_keyspace_cycle_respects_an_injected_timer():
    clock = FakeClock()
    ks = Keyspace(clock_ms=clock, random=random.Random(2).random)
    for i in range(10_000):
        ks.set_with_deadline(b"k%05d" % i, b"v", START_MS + 10)
    clock.now += 10
    step_s = 2**-10  # each timer read advances ~1 ms (exact in binary floating point)
    timer = FakeTimer(step_s)
    stats = ks.run_expiry_cycle(timer=timer)
    budget_s = ks.sampler.budget_s
    assert stats.out_of_time
    assert budget_s <= stats.elapsed_s <= budget_s + 2 * step_s
    # Loop k starts after k timer steps past the start, while k * step < 25 ms.
    assert stats.loops == 25
    assert stats.sampled == 20 * stats.loops
    # With replacement, a loop can draw the same key twice.
    assert 0.95 * stats.sampled <= stats.expired <= stats.sampled
    assert ks.key_count == 10_000 - stats.expired
    assert ks.stats.expired_active == stats.expired


def test_sampler_never_deletes_keys_that_are_not_expired():
    clock = FakeClock()
    ks = Keyspace(clock_ms=clock, random=random.Random(3).random)
    boundary, later, persistent = [], [], []
    for i in range(3_000):
        boundary.append(b"b%04d" % i)
        ks.set_with_deadline(boundary[-1], b"v", START_MS + 100)  # due exactly at +100
        later.append(b"l%04d" % i)
        ks.set_with_deadline(later[-1], b"v", START_MS + 101)
        persistent.append(b"p%04d" % i)
        ks.set(persistent[-1], b"v")
    clock.now += 100
    total = 0
    for _ in range(2_000):
        total += ks.run_expiry_cycle().expired
    assert total == ks.stats.expired_active
    # Most due keys went (the sampler converges on the stale share, it does not
    # promise zero) and nothing that was not due did.
    assert total > 0.9 * len(boundary)
    assert ks.key_count == 3 * 3_000 - total
    assert all(ks.pttl(k) == 1 for k in later)
    assert all(ks.pttl(k) == -1 for k in persistent)
    assert ks.stats.expired_lazy == 0
    assert sum(ks.exists(k) for k in boundary) == 0  # the rest expire lazily
    assert ks.stats.expired_lazy == len(boundary) - total
    assert ks.key_count == 2 * 3_000
