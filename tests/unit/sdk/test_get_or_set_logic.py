"""get_or_set without a network: XFetch early refresh, TTL jitter, and single-flight."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time

import pytest

from slotcache._commands import Commands
from slotcache._getorset import GetOrSet, Verdict, jittered_ttl, should_refresh_early
from slotcache._singleflight import AsyncFlights, ThreadFlights
from slotcache._stats import ClientStats
from slotcache._values import Values
from slotcache.codecs import MsgpackCodec

VALUES = Values(MsgpackCodec())
COMMANDS = Commands(VALUES)


def refresh_rate(now_ms: float, delta_ms: float, expiry_ms: float, beta: float) -> float:
    """Share of 20 000 readers (seeded) that would recompute early at ``now_ms``."""
    rng = random.Random(42)
    n = 20_000
    hits = sum(
        should_refresh_early(now_ms, delta_ms, expiry_ms, beta, 1.0 - rng.random())
        for _ in range(n)
    )
    return hits / n


def test_xfetch_probability_grows_as_expiry_nears() -> None:
    expiry, delta = 100_000.0, 100.0  # a value that takes 100 ms to compute
    times = [expiry - d for d in (2000, 1000, 500, 300, 200, 100, 50, 10, 0)]
    rates = [refresh_rate(t, delta, expiry, beta=1.0) for t in times]
    assert rates == sorted(rates)  # monotonic in time
    assert rates[0] < 0.001  # far from expiry: almost never
    assert rates[-1] == 1.0  # at expiry: always
    # The exact XFetch law: P(refresh) = exp(-(expiry - now) / (delta * beta)).
    for t, rate in zip(times, rates, strict=True):
        expected = math.exp(-(expiry - t) / delta)
        assert rate == pytest.approx(expected, abs=0.015)


def test_xfetch_beta_and_compute_time_scale_the_window() -> None:
    expiry = 100_000.0
    now = expiry - 200
    assert refresh_rate(now, 100, expiry, beta=2.0) > refresh_rate(now, 100, expiry, beta=1.0)
    assert refresh_rate(now, 100, expiry, beta=1.0) > refresh_rate(now, 100, expiry, beta=0.5)
    assert refresh_rate(now, 400, expiry, beta=1.0) > refresh_rate(now, 100, expiry, beta=1.0)
    assert refresh_rate(now, 100, expiry, beta=0.0) == 0.0  # off
    assert refresh_rate(expiry, 100, expiry, beta=0.0) == 1.0


class FakeRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


def test_judge_with_a_fake_clock() -> None:
    flow = GetOrSet(b"k", ttl_ms=60_000, beta=1.0, ttl_jitter=0.0)
    now = 1_000_000.0
    write = flow.write(COMMANDS, {"v": 1}, delta_ms=500, now_ms=now, rand=FakeRandom(0.0))
    assert write.request.ttl_ms == 60_000
    stored = write.request.value
    # rand() = 0.5 -> -ln(0.5) = 0.69: refresh once within 0.69 * 500 ms of expiry.
    rand = FakeRandom(0.5)
    assert flow.judge(VALUES, stored, now + 1000, rand) == (Verdict.FRESH, {"v": 1})
    assert flow.judge(VALUES, stored, now + 60_000 - 400, rand) == (Verdict.FRESH, {"v": 1})
    assert flow.judge(VALUES, stored, now + 60_000 - 300, rand) == (Verdict.EARLY, {"v": 1})
    assert flow.judge(VALUES, None, now, rand) == (Verdict.MISSING, None)
    # Without early refresh the entry is a plain value and always fresh.
    off = GetOrSet(b"k", ttl_ms=60_000, beta=0.0, ttl_jitter=0.0)
    plain = off.write(COMMANDS, "v", 500, now, FakeRandom(0.0)).request.value
    assert plain == VALUES.dump(b"k", "v")
    assert off.judge(VALUES, plain, now + 59_999, rand) == (Verdict.FRESH, "v")


def test_ttl_jitter_shortens_within_bounds() -> None:
    assert jittered_ttl(10_000, 0.0, 0.99) == 10_000
    rng = random.Random(1)
    ttls = [jittered_ttl(10_000, 0.2, rng.random()) for _ in range(1000)]
    assert min(ttls) >= 8_000 and max(ttls) <= 10_000
    assert len(set(ttls)) > 100  # spread out, not one value
    assert jittered_ttl(1, 0.9, 0.99) == 1
    flow = GetOrSet(b"k", ttl_ms=10_000, beta=0.0, ttl_jitter=0.5)
    assert flow.write(COMMANDS, 1, 0, 0, FakeRandom(0.5)).request.ttl_ms == 7_500


def test_get_or_set_options_are_checked() -> None:
    for kwargs in (
        {"ttl_ms": 0, "beta": 0.0, "ttl_jitter": 0.0},
        {"ttl_ms": 10, "beta": -1.0, "ttl_jitter": 0.0},
        {"ttl_ms": 10, "beta": 0.0, "ttl_jitter": 1.0},
    ):
        with pytest.raises(ValueError):
            GetOrSet(b"k", **kwargs)  # type: ignore[arg-type]


# ---- single-flight ---------------------------------------------------------------------------


def test_thread_single_flight_runs_one_loader_for_a_hundred_callers() -> None:
    stats = ClientStats()
    flights = ThreadFlights(stats)
    calls = 0
    gate = threading.Event()

    def load() -> str:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return "value"

    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(flights.run(b"k", load))) for _ in range(100)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while stats.single_flight_waits < 99 and time.monotonic() < deadline:
        time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == 1
    assert results == ["value"] * 100
    assert stats.single_flight_waits == 99
    assert flights.running() == 0
    # The next miss loads again.
    assert flights.run(b"k", lambda: "again") == "again"


def test_thread_single_flight_shares_the_loaders_exception_and_returns_stale_values() -> None:
    flights = ThreadFlights(ClientStats())
    started, gate = threading.Event(), threading.Event()

    def failing() -> str:
        started.set()
        gate.wait(5)
        raise RuntimeError("backend down")

    errors: list[BaseException] = []

    def leader() -> None:
        try:
            flights.run(b"k", failing)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=leader)
    t.start()
    started.wait(5)
    # A caller holding a still-valid value does not wait for the refresh.
    assert flights.run(b"k", lambda: "unused", stale=("old",)) == "old"
    follower = threading.Thread(target=leader)
    follower.start()
    time.sleep(0.05)
    gate.set()
    t.join(5)
    follower.join(5)
    assert [str(e) for e in errors] == ["backend down", "backend down"]


async def test_async_single_flight_runs_one_loader_for_a_hundred_tasks() -> None:
    stats = ClientStats()
    flights = AsyncFlights(stats)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    results = await asyncio.gather(*(flights.run(b"k", load) for _ in range(100)))
    assert calls == 1
    assert results == ["value"] * 100
    assert stats.single_flight_waits == 99
    assert flights.running() == 0


async def test_async_single_flight_survives_a_cancelled_leader() -> None:
    flights = AsyncFlights(ClientStats())
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return f"value{calls}"

    leader = asyncio.create_task(flights.run(b"k", load))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(flights.run(b"k", load))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await follower == "value2"  # it took over the load
    with pytest.raises(asyncio.CancelledError):
        await leader

    async def failing() -> str:
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        await flights.run(b"k", failing)
