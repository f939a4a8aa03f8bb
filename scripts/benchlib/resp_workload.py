"""resp: slotcache's Redis-protocol port against redis-server, with Redis's own tools.

Three measures, each side in alternating rounds:

- redis-benchmark, 50 clients, GET and SET of random keys (``-r``) with the
  benchmark's value size: requests per second, as redis-benchmark reports them;
- the same with ``-P 16`` (16 commands pipelined per client);
- redis-py, one blocking caller, GET of one key: p50 and p99 per call.

Both servers run on this machine with redis-benchmark itself, so the ratio
includes the load generator's share of the cores, as every side does.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

import redis

from benchlib import dataset
from benchlib.near_workload import figures, latencies
from benchlib.peers import REDIS
from benchlib.processes import slotcache_server
from benchlib.results import MetricDef, WorkloadResult, compare
from benchlib.schedule import alternating
from benchlib.shared_servers import SharedServers
from slotcache.ctl.launcher import LOOPBACK, free_port

TITLE = "Redis protocol: redis-benchmark -c 50 (and -P 16), redis-py sync GET"
METRICS = (
    MetricDef("get_rps", "GET, 50 clients", "req/s"),
    MetricDef("set_rps", "SET, 50 clients", "req/s"),
    MetricDef("get_p16_rps", "GET, 50 clients, -P 16", "req/s"),
    MetricDef("set_p16_rps", "SET, 50 clients, -P 16", "req/s"),
    MetricDef("p50_us", "redis-py sync GET p50", "µs", higher_is_better=False),
    MetricDef("p99_us", "redis-py sync GET p99", "µs", higher_is_better=False),
)
CLIENTS = 50
PIPELINE = 16
# Requests per redis-benchmark run per second of window, by pipelining depth: enough to
# fill the window on this kind of machine without a duration option in the tool.
REQUESTS_PER_S = {1: 25_000, PIPELINE: 120_000}
SLOTCACHE, REFERENCE = "slotcache", "redis"


def redis_benchmark_path() -> str | None:
    """Where redis-benchmark is, or None (it comes with Debian's redis-tools)."""
    return shutil.which("redis-benchmark")


def benchmark(port: int, pipeline: int, seconds: float, keys: int) -> dict[str, float]:
    """GET and SET requests per second of one redis-benchmark run against ``port``."""
    path = redis_benchmark_path()
    assert path is not None
    requests = max(1_000, int(REQUESTS_PER_S[pipeline] * seconds))
    args = [
        path, "-h", LOOPBACK, "-p", str(port), "-c", str(CLIENTS), "-n", str(requests),
        "-P", str(pipeline), "-r", str(keys), "-d", str(dataset.VALUE_BYTES),
        "-t", "get,set", "--csv",
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    table = csv.reader(io.StringIO(done.stdout))
    rows = {row[0]: float(row[1]) for row in table if row and row[0] != "test"}
    return {"get": rows["GET"], "set": rows["SET"]}


def _side(
    port: int, seconds: float, warmup_s: float, keys: int, key: bytes
) -> dict[str, list[float]]:
    """One round of every measure against one server."""
    plain = benchmark(port, 1, seconds, keys)
    piped = benchmark(port, PIPELINE, seconds, keys)
    with redis.Redis(host=LOOPBACK, port=port) as client:
        latencies(client.get, key, warmup_s)
        samples = latencies(client.get, key, seconds)
    return {
        "get_rps": [plain["get"]],
        "set_rps": [plain["set"]],
        "get_p16_rps": [piped["get"]],
        "set_p16_rps": [piped["set"]],
        "samples": samples,
    }


def _summary(rounds: list[dict[str, list[float]]]) -> dict[str, float]:
    out = {
        name: sum(r[name][0] for r in rounds) / len(rounds)
        for name in ("get_rps", "set_rps", "get_p16_rps", "set_p16_rps")
    }
    out.update(figures(sorted(s for r in rounds for s in r["samples"])))
    return out


def run(
    stack: ExitStack,
    servers: SharedServers,
    work_dir: Path,
    warmup_s: float,
    seconds: float,
    rounds: int,
    keys: int,
    extra_args: tuple[str, ...] = (),
) -> WorkloadResult:
    """Measure slotcache's RESP port and redis-server alike, in alternating rounds."""
    if redis_benchmark_path() is None:
        return WorkloadResult(
            "resp", TITLE, REDIS, skipped="redis-benchmark not found (apt-get install redis-tools)"
        )
    resp_port = free_port()
    stack.enter_context(slotcache_server(work_dir, ("--resp-port", str(resp_port), *extra_args)))
    ports: dict[str, int] = {SLOTCACHE: resp_port}
    redis_target = servers.redis()
    if redis_target is not None:
        ports[REFERENCE] = redis_target.port
    key = dataset.key(0)
    for port in ports.values():
        with redis.Redis(host=LOOPBACK, port=port) as client:
            client.set(key, dataset.value())
    measured: dict[str, list[dict[str, list[float]]]] = {side: [] for side in ports}
    per_round = seconds / rounds
    load: list[float] = []
    for _, side in alternating(list(ports), rounds):
        load.append(os.getloadavg()[0])
        measured[side].append(_side(ports[side], per_round, warmup_s, keys, key))
    reference = _summary(measured[REFERENCE]) if REFERENCE in measured else None
    result = WorkloadResult(
        "resp",
        TITLE,
        REDIS,
        compare(METRICS, _summary(measured[SLOTCACHE]), reference),
        reference_skipped=servers.redis_skipped,
        details={"load_average_1m": load, "clients": CLIENTS, "pipeline": PIPELINE},
    )
    result.notes.append(
        "1-minute load average during the rounds: "
        + ", ".join(f"{x:.1f}" for x in load)
        + f" ({os.cpu_count()} CPUs); redis-benchmark shares them with both servers"
    )
    return result
