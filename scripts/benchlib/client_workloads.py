"""W1-W3: load driven through each peer's own Python client.

Each workload is an operation builder plus the shared timed loop from
:mod:`benchlib.loops`; the peer only decides which client the operation
calls. Both peers get the same keys, values, random sequence, concurrency
and windows, measured in alternating order, so their figures can be divided.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, cast

import redis.asyncio

from benchlib import procfs
from benchlib.loops import AsyncOp, LoopResult, Probe, SyncOp, run_blocking, run_concurrent
from benchlib.peers import (
    REDIS,
    SLOTCACHE,
    AsyncKV,
    SyncKV,
    Target,
    async_client,
    redirects,
    sync_client,
)
from benchlib.results import Metric, MetricDef, WorkloadResult, compare
from benchlib.schedule import alternating
from benchlib.shared_servers import SharedServers
from benchlib.stats import per_item, percentile

Figures = dict[str, float]
# Probe readings: per-node server CPU of a cluster, and a slotcache client's redirects.
NODE_PREFIX = "node"
REDIRECTS = "redirects"


@dataclass(frozen=True)
class LoadSpec:
    """The shape of the load, identical for both peers."""

    keys: Sequence[bytes]
    value: bytes
    concurrency: int
    batch: int
    warmup_s: float
    duration_s: float
    seed: int
    rounds: int = 1


@dataclass(frozen=True)
class ClientWorkload:
    """A workload measured through the peers' clients.

    ``drive`` runs one measured window against one server; ``figures`` turns
    the merged windows of one side into the reported numbers.
    """

    key: str
    title: str
    metrics: tuple[MetricDef, ...]
    drive: Callable[[Target, LoadSpec], LoopResult]
    figures: Callable[[LoopResult, LoadSpec], Figures]
    concurrent: bool = True


def _key_and_kind(keys: Sequence[bytes], rng: random.Random) -> Callable[[], tuple[bytes, bool]]:
    """A draw of a uniformly random key and a fair coin (True: GET, False: SET), in one call."""
    n = len(keys)
    draw = partial(rng.randrange, 2 * n)

    def pick() -> tuple[bytes, bool]:
        i = draw()
        return keys[i >> 1], bool(i & 1)

    return pick


def get_set_op(kv: AsyncKV, spec: LoadSpec, rng: random.Random) -> AsyncOp:
    """One GET or one SET (50/50) of a random key."""
    pick, get, set_, value = _key_and_kind(spec.keys, rng), kv.get, kv.set, spec.value

    async def op() -> object:
        key, is_get = pick()
        return await (get(key) if is_get else set_(key, value))

    return op


def multi_op(kv: AsyncKV, spec: LoadSpec, rng: random.Random, first_get: bool) -> AsyncOp:
    """Alternating MGET and MSET of ``spec.batch`` consecutive keys from a random start.

    A random window of keys is as uniform over calls as a random sample and
    costs the load generator almost nothing, which matters when it shares
    the CPU with the server. Tasks start on alternate sides, so at any moment
    half the calls in flight are MGETs.
    """
    n, batch, keys, value = len(spec.keys), spec.batch, spec.keys, spec.value
    mget, mset = kv.mget, kv.mset
    state = [not first_get]

    async def op() -> object:
        start = rng.randrange(n - batch + 1)
        chosen = keys[start : start + batch]
        is_get = state[0] = not state[0]
        return await (mget(chosen) if is_get else mset(dict.fromkeys(chosen, value)))

    return op


def pipelined_op(kv: AsyncKV, spec: LoadSpec, rng: random.Random, first_get: bool) -> AsyncOp:
    """redis-py's side of W2: each window of :func:`multi_op` as a pipeline of GETs or SETs.

    One pipeline of ``spec.batch`` single-key commands (``transaction=False``:
    one round trip, no MULTI/EXEC) per call.

    slotcache's mget/mset take keys of any slots (split by owner in a
    cluster). A Redis Cluster refuses MGET/MSET across slots (CROSSSLOT), so
    what a Redis user does with a batch of 100 arbitrary keys is a pipeline
    of 100 commands; that is the reference W2 compares against.
    """
    n, batch, keys, value = len(spec.keys), spec.batch, spec.keys, spec.value
    client = cast(redis.asyncio.Redis, kv)
    state = [not first_get]

    async def op() -> object:
        start = rng.randrange(n - batch + 1)
        chosen = keys[start : start + batch]
        is_get = state[0] = not state[0]
        pipe = client.pipeline(transaction=False)
        if is_get:
            for key in chosen:
                pipe.get(key)
        else:
            for key in chosen:
                pipe.set(key, value)
        return await pipe.execute()

    return op


def blocking_get_set_op(kv: SyncKV, spec: LoadSpec, rng: random.Random) -> SyncOp:
    """One blocking GET or SET (50/50) of a random key."""
    pick, get, set_, value = _key_and_kind(spec.keys, rng), kv.get, kv.set, spec.value

    def op() -> object:
        key, is_get = pick()
        return get(key) if is_get else set_(key, value)

    return op


def cpu_probe(pids: Sequence[int]) -> Probe:
    """Cumulative CPU seconds of the server, of this load generator and of the whole machine.

    Server and client CPU show which side limits the throughput; what the
    machine used beyond both is other processes' load, i.e. noise. A server
    of several processes (a cluster) counts all of them, since a forwarded
    call costs CPU on two nodes; each node is also read on its own
    (``node0``, ``node1``...), which shows whether one of them is the bottleneck.
    """

    def probe() -> dict[str, float]:
        nodes = [procfs.cpu_seconds(pid) for pid in pids]
        readings = {
            "server": sum(nodes),
            "client": time.process_time(),
            "machine": procfs.machine_busy_seconds(),
        }
        if len(nodes) > 1:
            readings.update((f"{NODE_PREFIX}{i}", cpu) for i, cpu in enumerate(nodes))
        return readings

    return probe


def load_probe(target: Target, kv: object) -> Probe:
    """:func:`cpu_probe` of ``target``, plus the MOVED replies its slotcache client followed.

    A redirect in a measured window means the client's slot map was wrong, so
    some calls paid an extra round trip; the workload reports how many.
    """
    cpu = cpu_probe(target.pids)
    if redirects(kv) is None:
        return cpu

    def probe() -> dict[str, float]:
        return {**cpu(), REDIRECTS: float(redirects(kv) or 0)}

    return probe


def _drive_async(
    target: Target, spec: LoadSpec, build: Callable[[AsyncKV, random.Random, int], AsyncOp]
) -> LoopResult:
    async def main() -> LoopResult:
        rng = random.Random(spec.seed)
        async with async_client(target, spec.concurrency) as kv:
            return await run_concurrent(
                lambda i: build(kv, rng, i),
                spec.concurrency,
                spec.warmup_s,
                spec.duration_s,
                load_probe(target, kv),
            )

    return asyncio.run(main())


def drive_w1(target: Target, spec: LoadSpec) -> LoopResult:
    """W1: concurrent single-key GET/SET through the asyncio client."""
    return _drive_async(target, spec, lambda kv, rng, _i: get_set_op(kv, spec, rng))


def drive_w2(target: Target, spec: LoadSpec) -> LoopResult:
    """W2: concurrent batches of ``batch`` keys: slotcache mget/mset, redis-py pipelines."""
    build = pipelined_op if target.peer == REDIS else multi_op
    return _drive_async(target, spec, lambda kv, rng, i: build(kv, spec, rng, first_get=i % 2 == 0))


def drive_w3(target: Target, spec: LoadSpec) -> LoopResult:
    """W3: one blocking caller, one operation at a time."""
    rng = random.Random(spec.seed)
    with sync_client(target) as kv:
        return run_blocking(
            blocking_get_set_op(kv, spec, rng),
            spec.warmup_s,
            spec.duration_s,
            load_probe(target, kv),
        )


def _cpu_us_per(res: LoopResult, items: float, per: str) -> Figures:
    """Server and client CPU microseconds per ``per`` (op, key) over the measured windows."""
    return {
        f"{side}_cpu_us_per_{per}": per_item(res.probe_delta[side] * 1e6, items) or 0.0
        for side in ("server", "client")
    }


def ops_figures(res: LoopResult, spec: LoadSpec) -> Figures:
    """Throughput and CPU per operation."""
    return {"ops_per_s": res.per_second, **_cpu_us_per(res, res.operations, "op")}


def multi_figures(res: LoopResult, spec: LoadSpec) -> Figures:
    """Calls and keys per second, and CPU per key."""
    return {
        "calls_per_s": res.per_second,
        "keys_per_s": res.per_second * spec.batch,
        **_cpu_us_per(res, res.operations * spec.batch, "key"),
    }


def latency_figures(res: LoopResult, spec: LoadSpec) -> Figures:
    """Throughput, median and tail latency, and CPU per operation."""
    latencies = sorted(res.latencies_ns)
    return {
        **ops_figures(res, spec),
        "p50_us": percentile(latencies, 50) / 1e3,
        "p99_us": percentile(latencies, 99) / 1e3,
    }


def window_details(res: LoopResult) -> dict[str, Any]:
    """How much was measured, and how busy other processes kept the machine meanwhile.

    For a cluster, each node's CPU in cores too; for a slotcache client, the
    redirects it followed during the windows.
    """
    delta = res.probe_delta
    others = delta["machine"] - delta["server"] - delta["client"]
    out: dict[str, Any] = {
        "operations": res.operations,
        "window_s": res.seconds,
        "server_cpu_cores": delta["server"] / res.seconds,
        "client_cpu_cores": delta["client"] / res.seconds,
        "background_cpu_cores": max(0.0, others) / res.seconds,
    }
    nodes = sorted(
        (int(name.removeprefix(NODE_PREFIX)), cpu)
        for name, cpu in delta.items()
        if name.startswith(NODE_PREFIX)
    )
    if nodes:
        out["server_cpu_cores_per_node"] = [cpu / res.seconds for _, cpu in nodes]
    if REDIRECTS in delta:
        out["redirects"] = round(delta[REDIRECTS])
    return out


def _cpu_metrics(per: str) -> tuple[MetricDef, MetricDef]:
    return (
        MetricDef(f"server_cpu_us_per_{per}", f"server CPU per {per}", "µs", False),
        MetricDef(f"client_cpu_us_per_{per}", f"client CPU per {per}", "µs", False),
    )


W1 = ClientWorkload(
    "w1",
    "async GET/SET 50/50",
    (MetricDef("ops_per_s", "throughput", "ops/s"), *_cpu_metrics("op")),
    drive_w1,
    ops_figures,
)
W2 = ClientWorkload(
    "w2",
    "async MGET/MSET (redis: pipelined GET/SET)",
    (
        MetricDef("calls_per_s", "calls", "calls/s"),
        MetricDef("keys_per_s", "keys", "keys/s"),
        *_cpu_metrics("key"),
    ),
    drive_w2,
    multi_figures,
)
W3 = ClientWorkload(
    "w3",
    "blocking GET/SET, 1 caller",
    (
        MetricDef("ops_per_s", "throughput", "ops/s"),
        MetricDef("p50_us", "latency p50", "µs", False),
        MetricDef("p99_us", "latency p99", "µs", False),
        *_cpu_metrics("op"),
    ),
    drive_w3,
    latency_figures,
    concurrent=False,
)
CLIENT_WORKLOADS = (W1, W2, W3)


Side = Callable[[LoadSpec], LoopResult]


def measure(sides: Mapping[str, Side], spec: LoadSpec) -> dict[str, LoopResult]:
    """Drive every side in alternating rounds and merge each side's windows into one.

    A side is anything that runs one measured window for a spec (usually a
    workload's ``drive`` bound to a target). The measured time is split over
    ``spec.rounds`` rounds; each round warms up again on a fresh client, and
    round ``r`` uses seed ``spec.seed + r`` on every side, so all sides see the
    same keys in the same order.
    """
    round_spec = replace(spec, duration_s=spec.duration_s / spec.rounds)
    windows: dict[str, list[LoopResult]] = {side: [] for side in sides}
    for r, side in alternating(list(sides), spec.rounds):
        windows[side].append(sides[side](replace(round_spec, seed=spec.seed + r)))
    return {side: LoopResult.merge(parts) for side, parts in windows.items()}


def w1_against_itself(
    sides: Mapping[str, Side],
    spec: LoadSpec,
    tried: str,
    reference: str,
    group: Callable[[str], str] = str,
) -> tuple[list[Metric], dict[str, LoopResult]]:
    """W1 on slotcache sides in alternating rounds: ``tried`` over ``reference`` ratios.

    ``group`` names the group each side belongs to (by default, itself): a
    group of several sides, each its own server process, is measured as
    one, so that one process's luck (where its memory landed, which core it
    got) weighs less in the ratio. The metrics are named
    ``w1_<metric>_<tried>_vs_<reference>``; each group's merged windows come
    back too, for the details.
    """
    windows = measure(sides, spec)
    parts: dict[str, list[LoopResult]] = {}
    for side, res in windows.items():
        parts.setdefault(group(side), []).append(res)
    merged = {name: LoopResult.merge(results) for name, results in parts.items()}
    figures = {side: W1.figures(res, spec) for side, res in merged.items()}
    metrics = [
        replace(m, name=f"w1_{m.name}_{tried}_vs_{reference}", sides=(tried, reference))
        for m in compare(W1.metrics, figures[tried], figures[reference])
    ]
    return metrics, merged


def bound(workload: ClientWorkload, target: Target) -> Side:
    """``workload`` driven against ``target``: one side for :func:`measure`."""
    return partial(workload.drive, target)


def load_details(workload: ClientWorkload, spec: LoadSpec) -> dict[str, Any]:
    """The load's shape, recorded beside its figures."""
    return {
        "keys": len(spec.keys),
        "value_bytes": len(spec.value),
        "concurrency": spec.concurrency if workload.concurrent else 1,
        "rounds": spec.rounds,
        "warmup_s_per_round": spec.warmup_s,
        "duration_s": spec.duration_s,
        **({"batch": spec.batch} if workload is W2 else {}),
    }


def run(workload: ClientWorkload, servers: SharedServers, spec: LoadSpec) -> WorkloadResult:
    """Measure slotcache and redis (unless unavailable) in alternating rounds, same harness."""
    present = (servers.slotcache(), servers.redis())
    targets = {t.peer: servers.loaded(t) for t in present if t is not None}
    merged = measure({side: bound(workload, t) for side, t in targets.items()}, spec)
    figures = {side: workload.figures(res, spec) for side, res in merged.items()}
    details = load_details(workload, spec)
    details["pids"] = {side: t.pid for side, t in targets.items()}
    details.update({side: window_details(res) for side, res in merged.items()})
    return WorkloadResult(
        workload.key,
        workload.title,
        REDIS,
        compare(workload.metrics, figures[SLOTCACHE], figures.get(REDIS)),
        reference_skipped=servers.redis_skipped,
        details=details,
    )
