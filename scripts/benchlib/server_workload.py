"""Server-only: unary Get throughput under h2load, slotcache against a bare grpc.aio server.

Both servers run the same Python gRPC stack and the same generated stubs, so
the ratio slotcache/bare isolates what slotcache's own code costs per call.
Every run is checked to have produced real gRPC successes (see
:mod:`benchlib.h2load_output`), and slotcache's own counters must agree.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from benchlib import dataset, grpc_frame, h2load, procfs
from benchlib.h2load import H2loadSettings
from benchlib.peers import SLOTCACHE, Target, slotcache_stats, sync_client
from benchlib.processes import bare_server
from benchlib.results import MetricDef, WorkloadResult, compare
from benchlib.schedule import alternating
from benchlib.stats import per_item, rate
from slotcache.v1 import cache_pb2, cache_pb2_grpc

BARE = "bare grpc.aio"
TITLE = "h2load unary Get (server only)"
GET_PATH = "/slotcache.v1.Cache/Get"
METRICS = (
    MetricDef("req_per_s", "unary Get", "req/s"),
    MetricDef("server_cpu_us_per_req", "server CPU per Get", "µs", False),
)
_SLACK_S = 30.0


@dataclass(frozen=True)
class ServerSpec:
    """How long and how hard to drive each server."""

    warmup_s: float
    duration_s: float
    keys: int
    settings: H2loadSettings
    rounds: int = 1


@dataclass
class Totals:
    """One side's measured windows, summed over rounds."""

    requests: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    h2load_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0
    elapsed_s: float = 0.0

    def figures(self) -> dict[str, float]:
        """Requests per second and server CPU per request."""
        return {
            "req_per_s": rate(self.requests, self.seconds),
            "server_cpu_us_per_req": per_item(self.server_cpu_s * 1e6, self.requests) or 0.0,
        }

    def details(self) -> dict[str, Any]:
        """Saturation (server CPU in cores) and background load while measuring."""
        others = self.machine_cpu_s - self.server_cpu_s - self.h2load_cpu_s
        return {
            "requests": self.requests,
            "window_s": self.seconds,
            "server_cpu_cores": self.server_cpu_s / self.elapsed_s,
            "h2load_cpu_cores": self.h2load_cpu_s / self.elapsed_s,
            "background_cpu_cores": max(0.0, others) / self.elapsed_s,
        }


def run(slotcache: Target, work_dir: Path, spec: ServerSpec) -> WorkloadResult:
    """Measure slotcache and the bare server with h2load, in alternating rounds."""
    result = WorkloadResult("server", TITLE, BARE)
    path = h2load.h2load_path()
    if path is None:
        result.skipped = "h2load not found on PATH (install the nghttp2-client package)"
        return result
    key, value = dataset.key(0), dataset.value()
    with sync_client(slotcache) as kv:
        kv.set(key, value)
    body = work_dir / "get-request.grpc"
    body.write_bytes(grpc_frame.frame(cache_pb2.GetRequest(key=key).SerializeToString()))
    expected = grpc_frame.HEADER_BYTES + cache_pb2.GetReply(found=True, value=value).ByteSize()

    with bare_server(work_dir, spec.keys) as bare:
        targets = {SLOTCACHE: slotcache, BARE: Target.of(BARE, bare)}
        totals = {side: Totals() for side in targets}
        window = spec.duration_s / spec.rounds
        for _, side in alternating(list(targets), spec.rounds):
            _measure(path, targets[side], body, expected, spec, window, totals[side])
    result.metrics = compare(METRICS, totals[SLOTCACHE].figures(), totals[BARE].figures())
    result.details = {
        "h2load": {"clients": spec.settings.clients, "streams": spec.settings.streams},
        "rounds": spec.rounds,
        "duration_s": spec.duration_s,
        "slotcache": totals[SLOTCACHE].details(),
        "bare": totals[BARE].details(),
        "pids": {side: t.pid for side, t in targets.items()},
    }
    return result


def _measure(
    path: str,
    target: Target,
    body: Path,
    expected_data: int,
    spec: ServerSpec,
    window_s: float,
    totals: Totals,
) -> None:
    """Warm up, then one measured h2load run added to ``totals``; raise unless all succeeded."""
    _check_get(target, body)
    url = f"http://{target.address}{GET_PATH}"
    if spec.warmup_s > 0:
        warm = h2load.command(path, url, body, spec.settings, spec.warmup_s)
        h2load.finish(h2load.start(warm), spec.warmup_s + _SLACK_S)
    before = slotcache_stats(target) if target.peer == SLOTCACHE else {}
    cpu0, machine0, h2load0 = (
        procfs.cpu_seconds(target.pid),
        procfs.machine_busy_seconds(),
        _children_cpu_s(),
    )
    t0 = time.perf_counter()
    proc = h2load.start(h2load.command(path, url, body, spec.settings, window_s))
    summary = h2load.finish(proc, window_s + _SLACK_S)
    totals.elapsed_s += time.perf_counter() - t0
    totals.server_cpu_s += procfs.cpu_seconds(target.pid) - cpu0
    totals.machine_cpu_s += procfs.machine_busy_seconds() - machine0
    totals.h2load_cpu_s += _children_cpu_s() - h2load0
    problems = summary.problems(expected_data)
    if target.peer == SLOTCACHE:
        served = _ops_ok(before, slotcache_stats(target))
        if served < summary.succeeded:
            problems.append(f"server counted {served} ok Gets, h2load {summary.succeeded}")
    if problems:
        raise RuntimeError(f"{target.peer}: h2load responses were not all successes: {problems}")
    totals.requests += summary.done
    totals.seconds += summary.seconds


def _children_cpu_s() -> float:
    """CPU used by this process's reaped children (h2load) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ops_ok(before: dict[str, int], after: dict[str, int]) -> int:
    """Successful Gets the node counted between two Info snapshots."""
    name = "ops.get.ok"
    return after.get(name, 0) - before.get(name, 0)


def _check_get(target: Target, body: Path) -> None:
    """One Get through the generated stub must find the value h2load will ask for."""
    request = cache_pb2.GetRequest.FromString(grpc_frame.unframe(body.read_bytes()))
    with grpc.insecure_channel(target.address) as channel:
        reply = cache_pb2_grpc.CacheStub(channel).Get(request, timeout=10)
    if not reply.found or reply.value != dataset.value():
        raise RuntimeError(f"{target.peer}: Get({request.key!r}) did not return the stored value")
